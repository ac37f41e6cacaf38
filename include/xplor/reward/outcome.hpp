// How a verified response ended: the one outcome type of rewards (TruthRL's classification) and
// of the tree search (DeepSearch's terminal nodes), so a verifier written for one serves both.
#pragma once

#include <cstdint>

namespace xplor::reward {

/// correct; abstain ("I don't know"); incorrect (an answer that is wrong); no_answer (no final
/// answer: no \boxed{}, or a response cut off before it; DeepSearch's "incomplete").
enum class outcome : std::uint8_t { correct, abstain, incorrect, no_answer };

}  // namespace xplor::reward

// The two models the examples train: the reference transformer and the Dragon Hatchling (BDH).
// They share one interface — forward(forward_batch), backward(), backward(dlogp),
// target_logprobs(), params(), grads(), layout(), and save_checkpoint / load_checkpoint by
// overload — so a training loop written once as a template runs on either. Only their decoders
// differ: the transformer's KV cache grows with the sequence, BDH's recurrent state does not.
#pragma once

#include <string>
#include <xplor/model/bdh.hpp>
#include <xplor/model/bdh_checkpoint.hpp>
#include <xplor/model/bdh_decode.hpp>
#include <xplor/model/checkpoint.hpp>
#include <xplor/model/decode.hpp>
#include <xplor/model/transformer.hpp>

namespace examples {

template <class Model>
struct decoder_of;
template <>
struct decoder_of<xplor::model::transformer> {
  using type = xplor::model::kv_decoder;
};
template <>
struct decoder_of<xplor::model::bdh> {
  using type = xplor::model::bdh_decoder;
};
/// The decode policy (xplor::decode_policy) that generates from a Model.
template <class Model>
using decoder_t = typename decoder_of<Model>::type;

/// "transformer dD LL HH (P parameters)" or the BDH equivalent, for the examples' headers.
inline std::string describe(const xplor::model::transformer_config& c) {
  return "transformer d" + std::to_string(c.d_model) + " L" + std::to_string(c.n_layers) + " H" +
         std::to_string(c.n_heads) + " (" + std::to_string(xplor::model::parameter_layout(c).total) +
         " parameters)";
}
inline std::string describe(const xplor::model::bdh_config& c) {
  return "BDH d" + std::to_string(c.n_embd) + " L" + std::to_string(c.n_layer) + " H" +
         std::to_string(c.n_head) + " multiplier " + std::to_string(c.mlp_internal_dim_multiplier) + " (" +
         std::to_string(xplor::model::bdh_layout(c).total) + " parameters)";
}

}  // namespace examples

"""xplor.rl against hand-computed values, NumPy re-computations on random inputs, TRL's own
outputs (tests/data/rl_peers, produced by TRL 1.16's code) and bad input."""
import numpy as np
import pytest

import xplor
from xplor import rl


def grpo_numpy(r, group, eps=1e-4):
    g = r.astype(np.float64).reshape(-1, group)
    mean = g.mean(axis=1, keepdims=True)
    std = g.std(axis=1, ddof=1, keepdims=True)
    return ((g - mean) / (std + eps)).reshape(-1)


def test_grpo_hand_values():
    # Group [1, 0, 0]: mean 1/3, Bessel std sqrt(1/3); group [1, 1, 1] is degenerate (advantage 0).
    r = np.array([1, 0, 0, 1, 1, 1], dtype=np.float32)
    adv, report = rl.advantages(r, group_size=3)
    s = np.sqrt(1 / 3) + 1e-4
    np.testing.assert_allclose(adv, [(2 / 3) / s, (-1 / 3) / s, (-1 / 3) / s, 0, 0, 0], rtol=1e-6)
    assert report["num_groups"] == 2 and report["degenerate_groups"] == 1 and report["frac_zero_std"] == 0.5


def test_rloo_ragged_hand_values():
    # rloo: r - mean of the other responses; groups [1, 0] and [0, 1, 1, 1].
    r = np.array([1, 0, 0, 1, 1, 1], dtype=np.float32)
    adv, _ = rl.advantages(r, offsets=np.array([0, 2, 6]), estimator="rloo")
    np.testing.assert_allclose(adv, [1, -1, -1, 1 / 3, 1 / 3, 1 / 3], rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_grpo_random_against_numpy(seed):
    rng = np.random.default_rng(seed)
    group = int(rng.integers(2, 9))
    r = rng.normal(size=group * int(rng.integers(1, 20))).astype(np.float32)
    adv, _ = rl.advantages(r, group_size=group)
    np.testing.assert_allclose(adv, grpo_numpy(r, group), rtol=2e-5, atol=2e-6)
    # The same groups given as ragged offsets give the same advantages.
    offsets = np.arange(0, r.size + 1, group, dtype=np.int64)
    ragged, _ = rl.advantages(r, offsets=offsets)
    np.testing.assert_array_equal(adv, ragged)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_scales_against_numpy(scale):
    rng = np.random.default_rng(7)
    r = rng.normal(size=24).astype(np.float32)
    adv, _ = rl.advantages(r, group_size=4, options=rl.advantage_options(scale=scale))
    g = r.astype(np.float64).reshape(-1, 4)
    centred = (g - g.mean(axis=1, keepdims=True)).reshape(-1)
    if scale == "group":
        want = grpo_numpy(r, 4)
    elif scale == "batch":
        want = centred / (r.astype(np.float64).std(ddof=1) + 1e-4)
    else:
        want = centred
    np.testing.assert_allclose(adv, want, rtol=2e-5, atol=2e-6)


def test_every_estimator_runs_and_centres():
    rng = np.random.default_rng(3)
    r = rng.integers(0, 2, size=32).astype(np.float32)
    lengths = rng.integers(1, 50, size=32).astype(np.float32)
    for kind in ["grpo", "rloo", "reinforce_pp", "opo", "pass_at_k", "gpg"]:
        adv, _ = rl.advantages(r, group_size=8, estimator=kind, lengths=lengths if kind == "opo" else None)
        assert adv.dtype == np.float32 and adv.shape == r.shape and np.isfinite(adv).all(), kind
    # rloo, grpo and gpg sum to zero within each group.
    for kind in ["grpo", "rloo", "gpg"]:
        adv, _ = rl.advantages(r, group_size=8, estimator=kind)
        np.testing.assert_allclose(adv.reshape(-1, 8).sum(axis=1), 0, atol=1e-5)


def test_out_array_is_written_in_place():
    r = np.array([1, 0, 1, 1], dtype=np.float32)
    out = np.full(4, 7.0, dtype=np.float32)
    adv, _ = rl.advantages(r, group_size=2, out=out)
    assert adv is out or adv.__array_interface__["data"][0] == out.__array_interface__["data"][0]
    np.testing.assert_allclose(out, grpo_numpy(r, 2), rtol=1e-6)


def test_float32_inputs_are_read_in_place():
    a = np.arange(10, dtype=np.float32)
    assert xplor._xplor._input_address(a) == a.__array_interface__["data"][0]
    # A float64 or strided array is converted once (a copy), which is still correct.
    b = np.arange(10, dtype=np.float64)
    assert xplor._xplor._input_address(b) != b.__array_interface__["data"][0]


def test_rebn_and_returns():
    rewards = np.array([0, 0, 1, 1, 0], dtype=np.float32)
    G = rl.discounted_returns(rewards, np.array([0, 3, 5]), 0.5)
    np.testing.assert_allclose(G, [0.25, 0.5, 1, 1, 0])
    adv, report = rl.rebn(G)
    np.testing.assert_allclose(adv, (G - G.mean()) / (G.std() + 1e-9), rtol=1e-5)
    assert report["batch_mean"] == pytest.approx(G.mean())


def test_aggregate_rewards_hand_values():
    # Two functions, weights 1 and 0.5, one group of two; NaN = not applicable.
    r = np.array([[1.0, 0.0], [0.0, np.nan]], dtype=np.float32)
    adv, total, frac = rl.aggregate_rewards(r, np.array([1.0, 0.5], dtype=np.float32), group_size=2)
    np.testing.assert_allclose(total, [1.0, 0.0])
    np.testing.assert_allclose(adv, [0.5 / (np.sqrt(0.5) + 1e-4), -0.5 / (np.sqrt(0.5) + 1e-4)], rtol=1e-6)
    assert frac == 0.0


def test_advantage_errors_name_the_argument():
    r = np.ones(6, dtype=np.float32)
    with pytest.raises(ValueError, match="group_size = 4"):
        rl.advantages(r, group_size=4)
    with pytest.raises(xplor.Error, match="exactly one of group_size"):
        rl.advantages(r)
    with pytest.raises(ValueError, match="estimator = 'ppo'"):
        rl.advantages(r, group_size=3, estimator="ppo")
    with pytest.raises(ValueError, match="rewards"):
        rl.advantages(np.array([1, np.nan, 0], dtype=np.float32), group_size=3)
    with pytest.raises(ValueError, match="offsets"):
        rl.advantages(r, offsets=np.array([0, 4, 2, 6]))
    with pytest.raises(TypeError, match="no option"):
        rl.advantage_options(scael="batch")
    with pytest.raises(ValueError, match="scale = 'sequence'"):
        rl.advantage_options(scale="sequence")


# ---------------------------------------------------------------------------------------------
# Policy loss


def clip_loss_numpy(logp, old, adv, mask, eps_lo, eps_hi, kind, max_len=None):
    """TRL's clipped surrogate and its aggregation, float64, with d loss / d logp."""
    ratio = np.exp(logp - old)
    a = adv[:, None] if adv.ndim == 1 else adv
    u, c = ratio * a, np.clip(ratio, 1 - eps_lo, 1 + eps_hi) * a
    per_token = -np.minimum(u, c)
    live = np.where(u <= c, 1.0, ((ratio >= 1 - eps_lo) & (ratio <= 1 + eps_hi)).astype(float))
    dper = -a * ratio * live
    B, L = logp.shape
    if kind == "grpo":
        w = mask / np.maximum(mask.sum(axis=1, keepdims=True), 1) / B
    elif kind in ("bnpo", "dapo"):
        w = mask / max(mask.sum(), 1)
    elif kind == "dr_grpo":
        w = mask / (B * max_len)
    return float((per_token * w).sum()), dper * w


@pytest.mark.parametrize("kind", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_policy_loss_against_numpy(kind):
    rng = np.random.default_rng(11)
    B, L = 5, 7
    logp = rng.normal(-1.5, 0.5, size=(B, L)).astype(np.float32)
    old = (logp + rng.normal(0, 0.2, size=(B, L))).astype(np.float32)
    adv = rng.normal(size=B).astype(np.float32)
    mask = (rng.random((B, L)) < 0.8).astype(np.float32)
    options = rl.loss_options(type=kind, max_completion_length=L)
    loss, stats, dlogp = rl.policy_loss(logp, adv, mask=mask, old_logp=old, options=options)
    want, dwant = clip_loss_numpy(logp.astype(np.float64), old.astype(np.float64), adv.astype(np.float64), mask,
                                  0.2, 0.2, kind, L)
    assert loss == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert stats["loss"] == loss and stats["active_tokens"] == mask.sum()
    assert dlogp.shape == (B, L) and dlogp.dtype == np.float32
    np.testing.assert_allclose(dlogp, dwant, rtol=1e-5, atol=1e-7)


def test_padded_flat_and_strided_batches_agree():
    rng = np.random.default_rng(5)
    B, L = 4, 6
    logp = rng.normal(-1, 0.3, size=(B, L)).astype(np.float32)
    old = (logp + rng.normal(0, 0.1, size=(B, L))).astype(np.float32)
    adv = rng.normal(size=B).astype(np.float32)
    mask = np.ones((B, L), dtype=np.float32)
    mask[1, 4:] = 0
    loss, _, dlogp = rl.policy_loss(logp, adv, mask=mask, old_logp=old)
    # Flat: the unpadded tokens with sequence offsets.
    lengths = mask.sum(axis=1).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    keep = mask.astype(bool)
    flat_loss, _, flat_d = rl.policy_loss(logp[keep], np.repeat(adv, lengths), sequence_offsets=offsets,
                                          old_logp=old[keep])
    assert flat_loss == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(flat_d, dlogp[keep], rtol=1e-6)
    # Column-major copies ([B, L] views of Fortran arrays) are read through their strides.
    f_loss, _, f_d = rl.policy_loss(np.asfortranarray(logp), adv, mask=np.asfortranarray(mask),
                                    old_logp=np.asfortranarray(old))
    assert f_loss == loss
    np.testing.assert_array_equal(f_d, dlogp)


def test_policy_loss_torch_backward():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    logits = torch.tensor(rng.normal(size=(3, 5, 11)), dtype=torch.float32, requires_grad=True)
    tokens = torch.tensor(rng.integers(0, 11, size=(3, 5)))
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    adv = torch.tensor([1.0, -0.5, 0.25])
    mask = torch.ones(3, 5)
    loss, _, dlogp = rl.policy_loss(logp.detach(), adv, mask=mask)
    logp.backward(torch.from_numpy(dlogp))
    # On-policy DAPO: loss = -sum(A_b * 1) / tokens, gradient -A_b / tokens through logp.
    ref = logits.detach().clone().requires_grad_(True)
    ref_logp = torch.log_softmax(ref, -1).gather(-1, tokens[..., None])[..., 0]
    ratio = torch.exp(ref_logp - ref_logp.detach())
    (-(ratio * adv[:, None]).sum() / 15).backward()
    assert loss == pytest.approx(float(-(adv.sum() * 5) / 15), rel=1e-6)
    torch.testing.assert_close(logits.grad, ref.grad, rtol=1e-5, atol=1e-7)


def test_policy_loss_errors():
    logp = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="needs mask"):
        rl.policy_loss(logp, np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="sequence_offsets"):
        rl.policy_loss(np.zeros(6, dtype=np.float32), np.zeros(6, dtype=np.float32))
    with pytest.raises(ValueError, match="epsilon = 1.5"):
        rl.policy_loss(logp, np.zeros(2, dtype=np.float32), mask=np.ones((2, 3), dtype=np.float32),
                       options=rl.loss_options(epsilon=1.5))
    with pytest.raises(ValueError, match="mask"):
        rl.policy_loss(logp, np.zeros(2, dtype=np.float32), mask=np.ones((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="loss_type"):
        rl.trl_options({"loss_type": "nonsense"})


# ---------------------------------------------------------------------------------------------
# TRL's own outputs


def per_token(x, B, L):
    x = np.asarray(x, dtype=np.float32)
    return x if x.size == B * L else np.repeat(x.reshape(B), L).reshape(B, L)


def test_trl_loss_goldens(trl_goldens):
    manifest, tensors = trl_goldens
    checked = {}
    for case in manifest["cases"]:
        if case["kind"] != "loss":
            continue
        config, cid = case["config"], case["id"]
        B, L = case["shape"]
        t = lambda name: tensors.get(f"{cid}/{name}")
        _, options = rl.trl_options(config)
        if t("num_items_in_batch") is not None:
            options.num_items_in_batch = max(1.0, float(t("num_items_in_batch").reshape(-1)[0]))
        vespo = config["loss_type"] == "vespo"
        use_ratio = t("importance_sampling_ratio") is not None and (
            vespo or (config.get("use_vllm") and config.get("vllm_importance_sampling_correction")))
        kwargs = dict(mask=t("mask").reshape(B, L), options=options)
        for name in ("old_logp", "entropies", "sampling_logp"):
            if t(name) is not None:
                kwargs[name] = t(name).reshape(B, L)
        if t("ref_logp") is not None and options.beta != 0:
            kwargs["ref_logp"] = t("ref_logp").reshape(B, L)
        if use_ratio:
            kwargs["is_weights"] = per_token(t("importance_sampling_ratio"), B, L)
        loss, stats, dlogp = rl.policy_loss(t("logp").reshape(B, L), per_token(t("advantages"), B, L), **kwargs)
        want = case["scalars"]["loss"]
        assert abs(loss - want) <= 1e-5 * abs(want) + 1e-6 * (abs(want) + 1), (cid, loss, want)
        d_want = t("dlogp").reshape(B, L)
        np.testing.assert_allclose(dlogp, d_want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(d_want).max()),
                                   err_msg=cid)
        if t("dentropy") is not None and "dentropy" in stats:
            assert stats["dentropy"].shape == (B, L), cid  # logp's shape, ready for entropies.backward()
            np.testing.assert_allclose(stats["dentropy"], t("dentropy").reshape(B, L), rtol=1e-5,
                                       atol=1e-6, err_msg=cid)
        for name, got in (("entropy", stats["entropy"]), ("kl", stats["kl"]),
                          ("clip_ratio/low_mean", stats["clip_low_fraction"]),
                          ("clip_ratio/high_mean", stats["clip_high_fraction"])):
            if name in case["scalars"]:
                assert got == pytest.approx(case["scalars"][name], rel=1e-5, abs=1e-6), (cid, name)
        checked[config["loss_type"]] = checked.get(config["loss_type"], 0) + 1
    # Every aggregation the issue names, and TRL's other loss types, were checked.
    for kind in ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"):
        assert checked.get(kind, 0) >= 19, (kind, checked)


def test_trl_advantage_goldens(trl_goldens):
    manifest, tensors = trl_goldens
    n = 0
    for case in manifest["cases"]:
        if case["kind"] != "advantage":
            continue
        config, cid = case["config"], case["id"]
        B, K = case["shape"]
        rewards = tensors[f"{cid}/rewards"].reshape(B, K)
        adv, _, frac = rl.aggregate_rewards(rewards, np.array(config["reward_weights"], dtype=np.float32),
                                            group_size=config["num_generations"],
                                            mode=config["multi_objective_aggregation"],
                                            scale=config["scale_rewards"])
        want = tensors[f"{cid}/advantages_out"].reshape(-1)
        np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(want).max()), err_msg=cid)
        assert frac == pytest.approx(case["scalars"]["frac_reward_zero_std"]), cid
        if K == 1 and config["multi_objective_aggregation"] == "sum_then_normalize" and not np.isnan(rewards).any():
            # One reward function: TRL's block is group_advantages on the weighted rewards.
            options, _ = rl.trl_options({"scale_rewards": config["scale_rewards"]})
            single, _ = rl.advantages((rewards[:, 0] * np.float32(config["reward_weights"][0])).astype(np.float32),
                                      group_size=config["num_generations"], options=options)
            np.testing.assert_allclose(single, want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(want).max()))
        n += 1
    assert n == 48

"""Advantages and policy losses of TRL 1.16 and verl 0.9 (C++: xplor/rl/).

advantages() turns per-response rewards into advantages over equal or ragged groups;
policy_loss() returns (loss, stats, dlogp) where dlogp = d loss / d logp per token, so a PyTorch
trainer finishes the backward pass with ``logp.backward(torch.from_numpy(dlogp))``.
trl_options(config) and verl_options(config) map a trainer's own config (TRL's
GRPOConfig.to_dict(), verl's actor/algorithm dicts) to xplor's options.
"""
import json as _json

from ._xplor import (AdvantageOptions, LossOptions, advantages, aggregate_rewards, discounted_returns, policy_loss, rebn,
                     verl_advantage_options)
from ._xplor import trl_options_json as _trl_options_json
from ._xplor import verl_options_json as _verl_options_json


def _options(cls, kwargs):
    options = cls()
    for key, value in kwargs.items():
        if not hasattr(options, key):
            raise TypeError(f"{cls.__name__} has no option {key!r}")
        setattr(options, key, value)
    return options


def advantage_options(**kwargs) -> AdvantageOptions:
    """AdvantageOptions with the given fields set, e.g. advantage_options(scale="batch", eps=1e-6)."""
    return _options(AdvantageOptions, kwargs)


def loss_options(**kwargs) -> LossOptions:
    """LossOptions with the given fields set, e.g. loss_options(type="grpo", epsilon_high=0.28)."""
    return _options(LossOptions, kwargs)


def trl_options(config=None):
    """(AdvantageOptions, LossOptions) reproducing TRL's GRPOTrainer for a GRPOConfig (or its dict)."""
    if config is None:
        config = {}
    elif hasattr(config, "to_dict"):
        config = config.to_dict()
    return _trl_options_json(_json.dumps(config, default=str))


def verl_options(config):
    """(AdvantageOptions, LossOptions) reproducing verl's actor loss and GRPO advantages for a config dict."""
    if hasattr(config, "items") and not isinstance(config, dict):
        config = dict(config)  # an OmegaConf DictConfig converted by the caller is also fine
    return _verl_options_json(_json.dumps(config, default=str))


__all__ = ["AdvantageOptions", "LossOptions", "advantage_options", "advantages", "aggregate_rewards", "discounted_returns",
           "loss_options", "policy_loss", "rebn", "trl_options", "verl_advantage_options", "verl_options"]

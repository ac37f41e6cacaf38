"""Logits processing and reproducible batched draws (C++: xplor/sample/processors.hpp).

sample_rows() draws one token per row from Philox block `draws[r]` of stream `streams[r]`: the
same tokens whatever the batch composition or thread count, and the same as xplor's GPU sampler.
"""
from ._xplor import SamplingParams, process_logits, sample_rows, stream_id

__all__ = ["SamplingParams", "process_logits", "sample_rows", "stream_id"]

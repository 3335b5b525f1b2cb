"""Evaluate a policy's models on your own prompts, and propose a policy from the results.

The ``routed-bedrock evaluate`` command (``routed_bedrock.cli``) runs these modules in this order:

- ``dataset``: read and check the JSONL dataset, every line before any model is called;
- ``models``: the policy's models to evaluate, and a Converse call to each (botocore);
- ``checkpoint``: ``calls.jsonl``, every finished call, so that an interrupted run resumes;
- ``runner``: make the calls not yet answered, a few at once, recording each as it ends;
- ``progress``: the progress line shown while they run;
- ``metric``: score an answer against its reference, in [0, 1];
- ``scoring``: every (prompt, model) call scored, and statistics per task and model;
- ``proposal``: per task, the cheapest model within tolerance of the best, as a proposed policy;
- ``outputs``: the files written: the results CSV, ``outcomes.jsonl`` and ``summary.json``.
"""

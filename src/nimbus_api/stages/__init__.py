"""Warmup stages: the stage table, the daily-limit ramp, the warmup pause rule and the cooldown.

Kept light on purpose (no imports here): the sending and campaign code import ``stages.limits`` and
``stages.stages``, which must not pull in the services that import them back.
"""

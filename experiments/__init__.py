"""The commands: `python -m experiments.run` (jobs and studies), `experiments.pretrain` (a base), `experiments.audit`
(a supervision audit), and their config tree."""

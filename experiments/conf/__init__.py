"""The config tree. Importing this package registers ``model_schema``: every field of ``ModelConfig`` with its
default, so that a preset's file lists only what it changes and any field can still be set on the command line
(``model.grid_mask_prob=0.7``). The entry points import it; ``initialize_config_module("experiments.conf")`` does."""

import dataclasses

from hydra.core.config_store import ConfigStore

from sparse4d_lab.model.config import ModelConfig

# A plain mapping, not the frozen dataclass: a structured node would be read-only for the profiles that set fields.
ConfigStore.instance().store(name="model_schema", node=dataclasses.asdict(ModelConfig()))

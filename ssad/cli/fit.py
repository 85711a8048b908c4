"""Training from YAML: Lightning's CLI with ssad's defaults for logging, checkpoints and precision."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from ssad.cli.options import suggestion
from ssad.core.errors import SsadError
from ssad.core.tracking import wandb_mode, wandb_project

__all__ = ["PACKAGE_CONFIGS", "SsadCLI", "default_logger_config", "packaged_config", "resolve_config_args",
           "run_lightning_cli"]

log = logging.getLogger("ssad")

#: the configs shipped with ssad (package data; in a checkout, the top-level configs/ folder, which it links to)
PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def default_logger_config(root_dir: str, run_name: str | None) -> dict[str, Any]:
    """wandb (offline inside the run folder unless the user logged in), or CSV when wandb is disabled."""
    mode = wandb_mode()
    if mode == "disabled":
        return {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": root_dir, "name": "logs"}}
    os.environ.setdefault("WANDB_DIR", root_dir)
    return {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"save_dir": root_dir, "project": wandb_project(),
                      "name": run_name, "offline": mode == "offline", "log_model": False},
    }


class LoggedSaveConfigCallback(SaveConfigCallback):
    """Save config.yaml in the run folder and give the logger the full config, so runs carry it."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.logger is not None:
            config = self.parser.dump(self.config, skip_none=False, format="yaml")
            import yaml

            trainer.logger.log_hyperparams({"config": yaml.safe_load(config)})


class SsadCLI(LightningCLI):
    """LightningCLI whose default logger, checkpointing and precision follow ssad's conventions.

    A run folder it creates is removed again when the command fails before a checkpoint was written (a missing
    or bad data root, say), so no empty run with an offline wandb log is left behind.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._created_root: Path | None = None
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._remove_created_root()
            raise

    def _remove_created_root(self) -> None:
        """Remove the run folder this command created, unless training got as far as a checkpoint."""
        root = self._created_root
        if root is None or not root.is_dir() or any(root.rglob("*.ckpt")):
            return
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            with contextlib.suppress(Exception):  # a private setting: its footer would tell how to sync a gone run
                wandb.run._settings.silent = True
            wandb.finish(exit_code=1)  # its writer would otherwise go on writing into the folder
        shutil.rmtree(root, ignore_errors=True)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        root = trainer.default_root_dir or os.getcwd()
        if not Path(root).exists():
            self._created_root = Path(root)
        Path(root).mkdir(parents=True, exist_ok=True)
        if trainer.logger in (None, True):
            trainer.logger = default_logger_config(str(root), Path(root).name)
        if trainer.precision is None and torch.cuda.is_available():
            trainer.precision = "16-mixed"  # mixed precision only where a GPU is present
        model_class = _import(config.model.class_path)
        metric, mode = getattr(model_class, "monitor", ("val/loss", "min"))
        callbacks = list(trainer.callbacks or [])
        if not any("ModelCheckpoint" in str(getattr(c, "class_path", c)) for c in callbacks):
            folder = str(Path(root) / "checkpoints")
            # Two callbacks: Lightning 2.6 writes `save_last` only when the monitored checkpoint improves, but
            # resuming (`--ckpt_path last`) needs the latest epoch every time.
            last = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": folder, "filename": "last", "monitor": None, "save_top_k": 1,
                                  "enable_version_counter": False}}
            best = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": folder, "filename": "best", "monitor": metric, "mode": mode,
                                  "save_top_k": 1, "enable_version_counter": False}}
            callbacks += [best, last] if metric else [last]  # a model with nothing to validate has no "best"
        if trainer.logger and not any("LearningRateMonitor" in str(getattr(c, "class_path", c)) for c in callbacks):
            callbacks.append({"class_path": "lightning.pytorch.callbacks.LearningRateMonitor",
                              "init_args": {"logging_interval": "step"}})
        trainer.callbacks = callbacks


def _import(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


#: Where `--help` sends a user for the model's and the data's options, which it cannot list before a class is chosen.
_OPTIONS_HELP = """\
model and data options (set in --config, or on the command line, e.g. --model.embedding_dim 128):
  ssad fit --model.help MachineIDClassifier     the classifier's options (configs/demo.yaml, tiny.yaml, fan.yaml, ...)
  ssad fit --model.help GroupMADEModule         also BaselineAutoencoderModule, SpectralStatsModule
  ssad fit --data.help MachineIDDataModule      the classifier's data options (root, n_warped, skip_bad, ...)
  ssad fit --data.help LogMelWindowDataModule   the data options of the other models
  ssad fit --config configs/demo.yaml --print_config   every option of a config with its value
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the epilog's lines kept as written."""


def _import_ssad_classes() -> None:
    """Import every ssad model and data module, so the CLI knows them by short name (`--model.help MachineIDClassifier`)."""
    import ssad.data
    import ssad.models

    for package in (ssad.models, ssad.data):
        for name in package.__all__:
            getattr(package, name)


def packaged_config(value: str) -> Path | None:
    """The config shipped with ssad that `value` names (`demo`, `demo.yaml`, `configs/demo.yaml`), or None."""
    name = Path(value).name
    if not name.endswith((".yaml", ".yml")):
        name += ".yaml"
    path = PACKAGE_CONFIGS / name
    return path if path.is_file() else None


def resolve_config_args(args: list[str]) -> list[str]:
    """`args` with each `--config` that names no file here but a config shipped with ssad pointed at that one.

    So `ssad fit --config demo` (or the README's `--config configs/demo.yaml`) works from any folder, an
    installed ssad included; a file of that name here wins. A name that is neither is refused with the list.
    """
    resolved, follows = [], False
    for arg in args:
        flag, eq, value = arg.partition("=")
        if follows or (flag == "--config" and eq):
            value = arg if follows else value
            if not Path(value).is_file() and re.fullmatch(r"[\w./\\~-]+", value):
                shipped = packaged_config(value)
                if shipped is None:
                    names = sorted(p.stem for p in PACKAGE_CONFIGS.glob("*.yaml"))
                    near = suggestion(Path(value).stem, names)
                    raise SsadError(f"--config {value}: no such file, and no config of ssad's has that name"
                                    f"{f' (did you mean {near}?)' if near else ''}; ssad ships {', '.join(names)} "
                                    "(`--config demo` takes its demo.yaml)")
                log.info("--config %s: no such file here; using the config shipped with ssad, %s", value, shipped)
                value = str(shipped)
            arg = value if follows else f"--config={value}"
        follows = arg == "--config"
        resolved.append(arg)
    return resolved


def run_lightning_cli(args: list[str], **cli_kwargs: Any) -> SsadCLI:
    """Run `ssad fit|validate|test|predict ...` with ssad's defaults; `cli_kwargs` go to `LightningCLI`."""
    args = resolve_config_args(list(args))
    # The console script hands over sys.argv as `args`, which LightningCLI would warn about.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    _import_ssad_classes()
    # a subcommand's parser takes the main parser's formatter
    parser_kwargs = {"formatter_class": _HelpFormatter}
    parser_kwargs |= {name: {"epilog": _OPTIONS_HELP} for name in ("fit", "validate", "test", "predict")}
    cli_kwargs.setdefault("parser_kwargs", parser_kwargs)
    return SsadCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LoggedSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        args=args,
        **cli_kwargs,
    )

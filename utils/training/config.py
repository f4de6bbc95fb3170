"""Run configs: one YAML says everything a run does; ``key=value`` overrides change any field.

Overrides are parsed as YAML scalars (``lr=3e-4`` is a float, ``flag=false`` a bool) and must keep
the type of the value they replace, so a typo'd or mistyped flag fails instead of silently
turning something on (nanoGPT's configurator check, without its ``exec``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf


def load_config(path: str | Path, overrides: list[str] | None = None) -> DictConfig:
    """Load ``path`` (its ``defaults:`` list of other YAMLs merged first) and apply ``key=value`` overrides."""
    cfg = _load_with_defaults(Path(path))
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        value = _parse_scalar(raw)
        current = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if current is None and not _has_key(cfg, key):
            raise KeyError(f"override {key!r} names no field of {path}")
        if current is not None and value is not None and not _same_type(current, value):  # null switches a field off
            raise TypeError(f"override {key}={raw!r}: expected {type(current).__name__}, got {type(value).__name__}")
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def config_from_command_line(argv: list[str] | None, description: str | None) -> DictConfig:
    """A run script's config from its command line: ``--config <yaml> [key=value ...]``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="run config YAML")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-4")
    args = parser.parse_args(argv)
    return load_config(args.config, args.overrides)


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the resolved config (what the run actually used) next to its outputs."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(OmegaConf.to_yaml(cfg, resolve=True))


def _load_with_defaults(path: Path) -> DictConfig:
    cfg = OmegaConf.load(path)
    merged = OmegaConf.create()
    for base in cfg.pop("defaults", []) or []:
        merged = OmegaConf.merge(merged, _load_with_defaults((path.parent / base).resolve()))
    return OmegaConf.merge(merged, cfg)


def _parse_scalar(raw: str) -> object:
    """YAML scalar parsing, plus floats YAML 1.1 reads as strings (``3e-4``)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _has_key(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node


def _same_type(current: object, value: object) -> bool:
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, (int, float)) and isinstance(value, (int, float)):
        return isinstance(value, int) or isinstance(current, float)
    if OmegaConf.is_config(current):
        return isinstance(value, (dict, list))
    return isinstance(value, type(current))

"""Every loss predictor answers one interface, so evaluation, scoring and tuning are written once.

In the spirit of scikit-learn: construct with settings (``get_params`` returns them, ``set_params``
changes them), ``fit(runs)`` on a runs table (the flat frame of `ncpl.store`) sets the fitted state,
in attributes ending in ``_``; ``predict(configs)`` the final loss of each row, ``predict_curve`` the
loss at fractions of training where the predictor has curves, ``save(dir)`` and
``ncpl.predictors.load_predictor(dir)``. Nothing is pickled: a directory holds JSON (and safetensors or the
model's own format for weights).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ncpl.atomic import atomic_path
from ncpl.columns import tokens
from ncpl.errors import ConfigError, ModelDirError, NotFittedError
from ncpl.predictors import coverage
from ncpl.schema import RunConfig, RunRecord, config_to_flat
from ncpl.validation import validate

META_FILE = "predictor.json"
NEEDED_COLUMNS = ("source", "model.n_params", "data.tokens")
# The layout of predictor.json; bump it when a saved key is added or changes meaning. Directories written before it
# existed carry none and read as 0 (same layout as 1). A newer directory loads with a warning, without the keys this
# version does not know (as peft loads a config saved by a newer peft).
# 2: xgboost saves its settings beside the fitted booster settings; 3: the divergence trees; 4: NCPL's curve shape
# (`curve_shape`, `curve_law`; a directory of 3 reads as curve_law tokens)
FORMAT_VERSION = 4
REGISTRY = {  # name -> "module:Class"
    "chinchilla": "ncpl.predictors.chinchilla:Chinchilla",
    "xgboost": "ncpl.predictors.trees:XGBoost",
    "xgboost-residual": "ncpl.predictors.trees:XGBoostResidual",
    "hparam-law": "ncpl.predictors.hparam_law:HparamLaw",
    "xgboost-hparam-residual": "ncpl.predictors.trees:XGBoostHparamResidual",
    "ncpl": "ncpl.regressor.predictor:NCPL",
    "ensemble": "ncpl.predictors.ensemble:Ensemble",
}


Configs = pd.DataFrame | RunConfig | RunRecord | dict | Sequence[RunConfig]
Observed = tuple[np.ndarray, np.ndarray]  # a curve measured so far: fractions of training, losses
ANCHOR_POINTS = 3  # the last observed points a config-only curve is shifted to


def constructor_args(cls: type) -> list[str]:
    """The names of a class's settings: its constructor's arguments (scikit-learn's `get_params` reads the same)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in parameters if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]


def check_observed(observed: Sequence[Observed | None] | None, n_configs: int) -> list[Observed | None] | None:
    """`observed` as float arrays, one entry per config; refuses a length, a fraction or a loss it cannot use."""
    if observed is None:
        return None
    if len(observed) != n_configs:
        raise ConfigError(f"observed: {len(observed)} entries for {n_configs} configs; give one (or None) per config")
    out: list[Observed | None] = []
    for i, seen in enumerate(observed):
        if seen is None:
            out.append(None)
            continue
        at, loss = (np.atleast_1d(np.asarray(x, float)) for x in seen)
        if at.shape != loss.shape or not at.size:
            raise ConfigError(f"observed[{i}]: {at.size} fractions but {loss.size} losses; give one loss a fraction")
        if not np.all((at > 0) & (at <= 1)) or np.any(np.diff(at) <= 0):
            raise ConfigError(f"observed[{i}]: fractions must increase within (0, 1]; got {at.tolist()[:5]}")
        if not np.all(np.isfinite(loss) & (loss > 0)):
            raise ConfigError(f"observed[{i}]: losses must be finite and positive; got {loss.tolist()[:5]}")
        out.append((at, loss))
    return out


def as_frame(configs: Configs) -> pd.DataFrame:
    """Flat config rows from a frame, one or many `RunConfig`s / `RunRecord`s, or a nested dict."""
    if isinstance(configs, pd.DataFrame):
        return configs
    items = [configs] if isinstance(configs, (RunConfig, RunRecord, dict)) else list(configs)
    rows = []
    for item in items:
        if isinstance(item, dict):
            item = validate(RunConfig, item)
        rows.append(item.to_flat() if isinstance(item, RunRecord) else config_to_flat(item))
    return pd.DataFrame(rows)


def _checked(frame: pd.DataFrame) -> pd.DataFrame:
    """Configs to predict must give each row's source, N and D: every predictor's law reads them, and without them
    it would predict NaN or fail on a missing key."""
    missing = [column for column in NEEDED_COLUMNS if column not in frame.columns]
    if missing:
        raise ConfigError(
            f"configs: no column {', '.join(map(repr, missing))}; a config row needs {', '.join(NEEDED_COLUMNS)} "
            "(the flat columns ncpl.store.read_runs gives), or pass RunConfig objects"
        )
    for column in NEEDED_COLUMNS:
        values = frame[column]
        if column != "source":
            values = pd.to_numeric(values, errors="coerce").where(lambda v: v > 0)
        if values.isna().any():
            row = int(np.flatnonzero(values.isna())[0])
            raise ConfigError(
                f"{column}: got {frame[column].iloc[row]} in row {row}; every config needs "
                + ("its source" if column == "source" else "a positive number")
            )
    return frame


def _records_coverage(fit):
    @functools.wraps(fit)
    def wrapper(self: Predictor, runs: pd.DataFrame, *args: Any, **kwargs: Any) -> Predictor:
        fitted = fit(self, runs, *args, **kwargs)
        self.coverage_ = coverage.training_coverage(runs)
        return fitted

    return wrapper


class Predictor(ABC):
    """Subclasses implement `fit`, `_predict` (and `_predict_curve`, `_predict_details` where they can).

    Every subclass's `fit` is wrapped to record `coverage_` (`training_coverage` of the runs it was given): saved
    with the model and used to say how far each prediction lies outside the training runs (`outside_*` columns).
    Wrapping it here keeps that out of every predictor's own code; a directory saved before has `coverage_` None.
    """

    name: ClassVar[str]
    coverage_: dict[str, Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "fit" in cls.__dict__ and not getattr(cls.__dict__["fit"], "__isabstractmethod__", False):
            cls.fit = _records_coverage(cls.__dict__["fit"])

    @abstractmethod
    def fit(self, runs: pd.DataFrame) -> Predictor: ...

    @classmethod
    def _param_names(cls) -> list[str]:
        return constructor_args(cls)

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments as this predictor holds them: ``type(p)(**p.get_params())`` is an unfitted
        copy (scikit-learn's contract)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Predictor:
        """Change settings by name; refuses a name that is not a constructor argument. Refit to use them."""
        # the constructor validates (and normalises) them
        checked = create(self.name, **{**self.get_params(), **params})
        for name in params:
            setattr(self, name, getattr(checked, name))
        return self

    def __repr__(self) -> str:
        defaults = type(self)().get_params()  # as the constructor keeps them (NCPL's config None is TrainConfig())
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if not _equal(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self) -> bool:
        """Whether `fit` (or loading a model directory) gave the predictor what it predicts with (as scikit-learn's
        `check_is_fitted` asks); every predictor with fitted state overrides it."""
        return True

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"this {self.name} predictor is not fitted: call fit() first, or load a fitted one "
                "with ncpl.predictors.load_predictor"
            )

    def predict(self, configs: Configs) -> np.ndarray:
        """Final loss of each config."""
        self._check_fitted()
        return self._predict(_checked(as_frame(configs)))

    def predict_details(self, configs: Configs) -> pd.DataFrame:
        """``pred_loss``, and where the predictor has them ``pred_loss_lo`` / ``pred_loss_hi`` (10-90%) and ``p_diverge``;
        then `outside_of_training` 's columns."""
        self._check_fitted()
        frame = _checked(as_frame(configs))
        details = self._predict_details(frame)
        return pd.concat([details, self.outside_of_training(frame).set_axis(details.index)], axis=1)

    def outside_of_training(self, configs: Configs) -> pd.DataFrame:
        """Per config, how many decades each axis lies beyond the training runs of its source
        (`ncpl.predictors.coverage.outside`)."""
        return coverage.outside(self.coverage_, as_frame(configs))

    def unseen_fields(self, configs: Configs) -> list[str]:
        """Config fields set in `configs` that no training run had (the model cannot have learned their effect);
        [] when the training fields are unknown (a model saved before they were recorded)."""
        return coverage.unseen_fields(self.coverage_, as_frame(configs))

    def predict_curve(
        self, configs: Configs, fractions: np.ndarray, observed: Sequence[Observed | None] | None = None
    ) -> np.ndarray:
        """Loss at each fraction of training: shape (configs, fractions). The point at fraction 1 is the final-loss
        prediction (`predict`): a curve head asked at the end and the final-loss head can differ by a few thousandths.
        Where the config's lr never rises after warmup (`ncpl.schedules.never_rises`) the curve is made
        non-increasing (`non_increasing`).

        `observed`: per config, the (fractions, losses) of its curve measured so far, or None. A predictor that
        `reads_prefix` (NCPL trained with `prefix_points`) conditions on them; any other shifts its curve by its mean
        miss on the last `ANCHOR_POINTS` of them."""
        self._check_fitted()
        frame, fractions = _checked(as_frame(configs)), np.asarray(fractions, float)
        observed = check_observed(observed, len(frame))
        if observed is not None and self.reads_prefix:
            curve = self._predict_curve_seen(frame, fractions, observed)
        else:
            curve = self._config_curve(frame, fractions)
        falls = np.array([_lr_never_rises(row) for row in frame.to_dict("records")], bool)
        curve[falls] = non_increasing(curve[falls], fractions)
        if observed is not None and not self.reads_prefix:
            for i, seen in enumerate(observed):
                if seen is not None:
                    at, loss = seen[0][-ANCHOR_POINTS:], seen[1][-ANCHOR_POINTS:]
                    curve[i] += np.mean(loss - self.predict_curve(frame.iloc[[i]], at)[0])
        return curve

    def _config_curve(self, frame: pd.DataFrame, fractions: np.ndarray) -> np.ndarray:
        curve = self._predict_curve(frame, fractions)
        end = np.isclose(fractions, 1.0)
        if end.any():
            curve[:, end] = self._predict(frame)[:, None]
        return curve

    @property
    def reads_prefix(self) -> bool:
        """Whether `predict_curve` conditions on an observed prefix itself (else it shifts the config's curve)."""
        return False

    def _predict_curve_seen(
        self, configs: pd.DataFrame, fractions: np.ndarray, observed: list[Observed | None]
    ) -> np.ndarray:
        raise NotImplementedError  # only predictors that read a prefix

    @abstractmethod
    def _predict(self, configs: pd.DataFrame) -> np.ndarray: ...

    def _predict_details(self, configs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"pred_loss": self._predict(configs)})

    @property
    def predicts_curves(self) -> bool:
        return type(self)._predict_curve is not Predictor._predict_curve

    def _predict_curve(self, configs: pd.DataFrame, fractions: np.ndarray) -> np.ndarray:
        raise ConfigError(f"{self.name} does not predict loss curves; use chinchilla, hparam-law or ncpl")

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """Everything needed to predict, as JSON-serialisable data."""

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None: ...

    @classmethod
    def from_directory(cls, directory: str | Path, state: dict[str, Any]) -> Predictor:
        """Rebuild from `save`'s directory; predictors with weight files beside the JSON override this."""
        predictor = cls()
        predictor.set_state(state)
        return predictor

    def save(self, directory: str | Path) -> Path:
        self._check_fitted()
        directory = Path(directory)
        meta = {
            "format_version": FORMAT_VERSION,
            "predictor": self.name,
            "state": self.get_state(),
            "coverage": self.coverage_,
        }
        with atomic_path(directory / META_FILE) as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        return directory


def _lr_never_rises(row: dict[str, Any]) -> bool:
    from ncpl.schedules import never_rises, row_schedule

    schedule = row_schedule(row)
    return schedule is not None and never_rises(schedule)  # a schedule ncpl cannot read: its curve is left as predicted


def non_increasing(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Each curve (a row, at `fractions`) projected onto the non-increasing curves by isotonic regression, the point at
    fraction 1 (the final-loss prediction) held where it is. The projection onto a convex set that holds the true
    curve never moves a prediction away from it: where the truth falls, the error can only shrink."""
    from sklearn.isotonic import isotonic_regression

    order = np.argsort(fractions, kind="stable")
    end = np.isclose(fractions[order], 1.0)
    weight = np.where(end, 1e9, 1.0)
    out = curves.astype(float, copy=True)
    for row in out:
        fitted = isotonic_regression(row[order], sample_weight=weight, increasing=False)
        if end.any():  # the weight held it to within ~1e-9 nats; put it back exactly, the rest on its side of it
            at_end = row[order][end][0]
            first, last = np.flatnonzero(end)[[0, -1]]
            fitted[:first], fitted[end], fitted[last + 1 :] = (
                np.maximum(fitted[:first], at_end),
                at_end,
                np.minimum(fitted[last + 1 :], at_end),
            )
        row[order] = fitted
    return out


class TokenLaw(Predictor):
    """A law of the loss at any token count: the final loss at D, a curve point at a fraction of D."""

    @abstractmethod
    def predict_at(self, configs: pd.DataFrame, n_tokens: np.ndarray) -> np.ndarray:
        """The law at each config with the given token counts (a point on its curve)."""

    def _predict(self, configs: pd.DataFrame) -> np.ndarray:
        return self.predict_at(configs, tokens(configs))

    def _predict_curve(self, configs: pd.DataFrame, fractions: np.ndarray) -> np.ndarray:
        return np.stack([self.predict_at(configs, f * tokens(configs)) for f in fractions], axis=1)


def predictor_class(name: str) -> type[Predictor]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown predictor {name!r}; known: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, **params: Any) -> Predictor:
    cls = predictor_class(name)
    unknown = sorted(set(params) - set(cls._param_names()))
    if unknown:
        raise ConfigError(
            f"{', '.join(unknown)}: not a setting of {name}; its settings: {', '.join(cls._param_names())}"
        )
    return cls(**params)


def load_predictor(directory: str | Path) -> Predictor:
    from pydantic import ValidationError

    meta_path = Path(directory) / META_FILE
    if not Path(directory).is_dir():
        raise ModelDirError(
            f"{directory}: model directory not found; give the folder written by `ncpl fit` or `ncpl train`"
        )
    if not meta_path.exists():
        raise ModelDirError(
            f"{directory}: not a predictor directory ({meta_path} not found); "
            "give the folder written by `ncpl fit` or `ncpl train`, or re-create it with them"
        )
    corrupted = f"{meta_path}: corrupted predictor file"
    fix = "re-create it with `ncpl fit` or `ncpl train`"
    try:
        meta = json.loads(meta_path.read_text())
        name, state, version = meta["predictor"], meta["state"], meta.get("format_version", 0)
        if not isinstance(version, int) or version < 0:
            raise TypeError(f"format_version {version!r} is not a whole number >= 0")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise ModelDirError(f"{corrupted} ({type(error).__name__}: {error}); {fix}") from None
    try:
        cls = predictor_class(name)
    except ConfigError as error:
        raise ModelDirError(f"{meta_path}: {error}; this ncpl cannot load it") from None
    dropped = [key for key in meta if key not in ("format_version", "predictor", "state", "coverage")]
    while True:
        try:
            predictor = cls.from_directory(directory, state)
            break
        except (KeyError, TypeError, ValidationError) as error:  # the state lacks a field or has the wrong shape
            key = _unknown_key(error)
            if key is None or _without(state, key) == state:
                raise ModelDirError(
                    f"{corrupted} (its state does not fit {name}: {type(error).__name__}: {error}); {fix}"
                ) from None
            state = _without(state, key)
            dropped.append(key)
    if version > FORMAT_VERSION or dropped:
        message = f"{meta_path}: model format {version}, this ncpl reads formats up to {FORMAT_VERSION}; "
        message += (
            f"dropped the keys it does not know: {', '.join(dropped)}"
            if dropped
            else "what that format added is ignored"
        )
        warnings.warn(f"{message}; upgrade ncpl to use them", stacklevel=2)
    predictor.coverage_ = meta.get("coverage")  # absent in directories saved before: the range is unknown
    return predictor


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # values without a truth value for ==
        return False


def _unknown_key(error: Exception) -> str | None:
    """The key a dataclass or pydantic model refused as unknown (``None`` when the error is another one)."""
    if isinstance(error, TypeError):
        match = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        return match[1] if match else None
    extra = [e["loc"][-1] for e in getattr(error, "errors", list)() if e["type"] == "extra_forbidden" and e["loc"]]
    return str(extra[0]) if extra else None


def _without(state: Any, key: str) -> Any:
    """``state`` with ``key`` removed from every mapping in it."""
    if isinstance(state, dict):
        return {k: _without(v, key) for k, v in state.items() if k != key}
    return [_without(v, key) for v in state] if isinstance(state, list) else state

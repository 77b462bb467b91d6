"""Joint hyperparameter search on any predictor, under a model-size / token or compute constraint.

A search space names flat config fields, each a range (``{low, high, log}``, log by default for
positive ranges) or a list of ``choices``. Candidates are the base config with a scrambled Sobol
sample of the space substituted, then refined: each round samples again around the best so far,
in a box a third the size. Derived fields follow what was changed (steps = tokens / batch tokens,
sequences = batch tokens / sequence length; under a compute budget C = 6 N D the tokens follow N,
and width and depth scale as N^(1/3) to keep the base's shape).

Beside the search: the StepLaw law's and a Complete^(d)P transfer's suggestions, scored by the same
model, and the predicted loss over (lr, batch) on the slice through the best pick, for a plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.stats import qmc

from ncpl.columns import effective_params, tokens
from ncpl.errors import ConfigError
from ncpl.field_types import parse_quantity
from ncpl.flat import is_missing
from ncpl.laws import steplaw
from ncpl.laws.transfer import TransferConfig, transfer
from ncpl.predictors import Predictor
from ncpl.schema import RunConfig, config_from_flat, config_to_flat, known_fields
from ncpl.validation import did_you_mean, validate

SIZE, TOKENS = "model.n_params", "data.tokens"
LR, BATCH = "optimizer.lr", "batch.tokens"
ALIASES = {"n_params": SIZE, "tokens": TOKENS}


@dataclass
class Dimension:
    field: str
    low: float | None = None
    high: float | None = None
    log: bool = True
    choices: list[Any] | None = None

    def sample(self, u: np.ndarray, center: np.ndarray | None = None, shrink: float = 1.0) -> np.ndarray:
        """Map uniforms in [0, 1) onto the dimension; around `center` in a box `shrink` of its width."""
        if self.choices is not None:  # refinement keeps the centre's choice and searches the ranges around it
            if center is not None:
                return center
            return np.asarray(self.choices, dtype=object)[
                np.minimum((u * len(self.choices)).astype(int), len(self.choices) - 1)
            ]
        low, high = (np.log(self.low), np.log(self.high)) if self.log else (self.low, self.high)
        if center is not None:
            c = np.log(center.astype(float)) if self.log else center.astype(float)
            half = shrink * (high - low) / 2
            low, high = np.maximum(low, c - half), np.minimum(high, c + half)
        x = low + u * (high - low)
        return np.exp(x) if self.log else x


def load_space(path: str | Path) -> list[Dimension]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: search space not found")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of field -> {{low, high[, log]}} or {{choices: [...]}}")
    return [parse_dimension(field, spec, path) for field, spec in data.items()]


def _quantity_or_value(value: Any) -> Any:
    """`512K` -> 512000.0; a choice that is not a count (`adamw`) as it is."""
    try:
        return parse_quantity(value)
    except ValueError:
        return value


def parse_dimension(field: str, spec: Any, where: Any = "space") -> Dimension:
    field = ALIASES.get(field, field)
    known = known_fields()
    if field not in known and not field.startswith("extra."):
        raise ConfigError(
            f"{where}: {field}: unknown config field{did_you_mean(field, [*known, *ALIASES])}; search a "
            "flat dotted field (optimizer.lr, batch.tokens, ...) or one of your own as extra.NAME"
        )
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: {field}: expected {{low, high[, log]}} or {{choices: [...]}}, got {spec!r}")
    if "choices" in spec:
        if not spec["choices"]:
            raise ConfigError(f"{where}: {field}.choices is empty")
        return Dimension(field, choices=[_quantity_or_value(choice) for choice in spec["choices"]])
    try:
        low, high = float(parse_quantity(spec["low"])), float(parse_quantity(spec["high"]))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where}: {field}: needs numeric 'low' and 'high', got {spec!r}") from None
    log = bool(spec.get("log", low > 0))
    if not low < high or (log and low <= 0):
        raise ConfigError(
            f"{where}: {field}: need low < high{' and low > 0 for a log range' if log else ''}, got {low}, {high}"
        )
    return Dimension(field, low, high, log)


def _derive(frame: pd.DataFrame, base: dict[str, Any], flops: float | None) -> pd.DataFrame:
    frame = frame.copy()
    if flops is not None:
        ratio = frame[SIZE].astype(float) / float(base[SIZE])
        frame[TOKENS] = flops / (6.0 * frame[SIZE].astype(float))
        for field, power in (("model.d_model", 1 / 3), ("model.d_ff", 1 / 3), ("model.n_layers", 1 / 3)):
            if base.get(field) is not None and field in frame:
                frame[field] = np.maximum(1, np.round(float(base[field]) * ratio**power)).astype(int)
        for field in ("model.n_params_total", "model.n_params_active"):
            if field in frame:
                frame[field] = np.nan
    if frame.get("model.seq_len") is not None and frame["model.seq_len"].notna().all() and "batch.tokens" in frame:
        frame["batch.sequences"] = np.maximum(1, np.round(frame["batch.tokens"] / frame["model.seq_len"])).astype(int)
    if "batch.tokens" in frame and frame["batch.tokens"].notna().all():
        frame["schedule.total_steps"] = np.maximum(1, np.round(frame[TOKENS] / frame["batch.tokens"])).astype(int)
    return frame


def tune(
    model: Predictor,
    base: RunConfig,
    space: list[Dimension],
    *,
    flops: float | None = None,
    n: int = 1024,
    rounds: int = 2,
    top: int = 10,
    max_p_diverge: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The `top` candidates by predicted loss, with the searched fields and the predictions."""
    fields = [d.field for d in space]
    if flops is not None and not (np.isfinite(flops) and flops > 0):
        raise ConfigError(f"flops: got {flops}; a compute budget C = 6ND is a positive number of FLOPs, e.g. 1e21")
    if flops is None and {SIZE, TOKENS} & set(fields):
        raise ConfigError(
            f"space: {sorted({SIZE, TOKENS} & set(fields))} are fixed by the constraint; "
            "search them under a compute budget (flops) instead"
        )
    if flops is not None and TOKENS in fields:
        raise ConfigError(f"space: {TOKENS} follows from the compute budget (C / 6N); search {SIZE} instead")
    base_row = config_to_flat(base)
    for dim in space:  # every value the search can take must make a valid config (a choice 'abc' for batch.tokens)
        for value in dim.choices if dim.choices is not None else [dim.low, dim.high]:
            try:
                config_from_flat({**base_row, dim.field: value})
            except ConfigError as error:
                raise ConfigError(f"space: {dim.field} = {value!r}: {error}") from None
    if flops is not None and SIZE not in fields:
        n0 = float(base_row[SIZE])
        space = [*space, Dimension(SIZE, n0 / 4, n0 * 4)]
    sobol = qmc.Sobol(len(space), scramble=True, seed=seed)
    pool = pd.DataFrame()
    best = None
    for round_ in range(rounds + 1):
        u = sobol.random(n if round_ == 0 else max(16, n // 4))
        if best is None:
            values = {d.field: d.sample(u[:, i]) for i, d in enumerate(space)}
        else:  # around the best candidates so far, a third of the box each round
            centers = best.iloc[np.arange(len(u)) % len(best)]
            values = {
                d.field: d.sample(u[:, i], centers[d.field].to_numpy(), shrink=3.0**-round_)
                for i, d in enumerate(space)
            }
        candidates = pd.DataFrame([base_row] * len(u))
        for field, column in values.items():
            candidates[field] = column
        candidates = _derive(candidates, base_row, flops)
        scored = pd.concat([candidates, model.predict_details(candidates)], axis=1)
        if max_p_diverge is not None:
            if "p_diverge" not in scored:
                raise ConfigError(
                    f"max_p_diverge {max_p_diverge}: {model.name} gives no p_diverge, so it cannot drop candidates "
                    "likely to diverge; leave it out, or tune with a model that gives one (the xgboost predictors, ncpl)"
                )
            scored = scored[scored["p_diverge"] <= max_p_diverge]
        pool = pd.concat([pool, scored], ignore_index=True).sort_values("pred_loss", kind="stable").head(max(top, 64))
        if pool.empty:
            raise ConfigError(f"max_p_diverge {max_p_diverge}: no candidate is that safe; raise it or narrow the space")
        best = pool.head(max(4, top // 2))
    shown = list(dict.fromkeys([*fields, *([SIZE, TOKENS] if flops is not None else []), "schedule.total_steps"]))
    details = [c for c in ("pred_loss", "pred_loss_lo", "pred_loss_hi", "p_diverge", "outside") if c in pool]
    return pool.head(top)[[c for c in shown if c in pool] + details].reset_index(drop=True)


def ignored_fields(
    model: Predictor, base: RunConfig, space: list[Dimension], best: pd.Series, flops: float | None = None
) -> list[str]:
    """The searched fields the model's prediction does not depend on: each set to its range's ends (or every choice)
    around the best pick, the rest held, gives the same loss (Chinchilla reads only N and D)."""
    base_row = config_to_flat(base)
    row = {**base_row, **{d.field: best[d.field] for d in space if d.field in best}}
    ignored = []
    for dim in space:
        values = dim.choices if dim.choices is not None else [dim.low, dim.high]
        frame = _derive(pd.DataFrame([{**row, dim.field: value} for value in values]), base_row, flops)
        if np.ptp(model.predict(frame)) == 0:
            ignored.append(dim.field)
    return ignored


def _flat(config: RunConfig | dict[str, Any]) -> dict[str, Any]:
    return config if isinstance(config, dict) else config_to_flat(config)


def steplaw_suggestion(base: RunConfig | dict[str, Any]) -> dict[str, float]:
    """The StepLaw law's lr and batch (tokens) at the base's N (active, for MoE) and D."""
    point = pd.DataFrame([_flat(base)])
    return {
        LR: float(steplaw.optimal_lr(effective_params(point), tokens(point))[0]),
        BATCH: float(steplaw.optimal_batch_tokens(tokens(point))[0]),
    }


def transfer_suggestion(tuned: RunConfig, target: RunConfig) -> dict[str, float]:
    """Complete^(d)P (alpha = 1) from a tuned run to the target's width, depth, batch and tokens.

    A RunConfig has one global lr, eps and weight decay where the rules are per module: they get the
    hidden-weight rules, the matrices that hold nearly all the parameters; 1 - beta follows m_B / m_D.
    """
    shape = {"model.d_model": "width", "model.n_layers": "depth", BATCH: "batch", TOKENS: "tokens"}
    rows = {"tuned": config_to_flat(tuned), "target": config_to_flat(target)}
    for option, row in rows.items():
        missing = [field for field in [*shape, *([LR] if option == "tuned" else [])] if row.get(field) is None]
        if missing:
            raise ConfigError(
                f"{option}: {', '.join(missing)} missing; Complete^(d)P needs both runs' model.d_model, "
                "model.n_layers and batch.tokens, and the tuned run's optimizer.lr"
            )
    opt = tuned.optimizer
    base = validate(
        TransferConfig,
        {
            **{name: rows["tuned"][field] for field, name in shape.items()},
            "lr": {"hidden": opt.lr},
            "eps": {"hidden": opt.eps} if opt.eps else {},
            "weight_decay": {"hidden": opt.weight_decay} if opt.weight_decay else {},
            **{beta: getattr(opt, beta) for beta in ("beta1", "beta2") if getattr(opt, beta) is not None},
        },
    )
    out = transfer(base, **{name: rows["target"][field] for field, name in shape.items()})
    values = {LR: out["lr"]["hidden"]}
    for name in ("eps", "weight_decay"):
        if getattr(opt, name) is not None:
            values[f"optimizer.{name}"] = out[name].get("hidden", 0.0)
    values.update({f"optimizer.{beta}": out[beta] for beta in ("beta1", "beta2") if getattr(opt, beta) is not None})
    return values


def score_suggestions(
    model: Predictor, base: RunConfig | dict[str, Any], suggestions: dict[str, dict[str, float]]
) -> pd.DataFrame:
    """Each suggestion (label -> field values) applied to the base (a config or a flat row), derived fields following,
    scored; indexed by label."""
    base_row = _flat(base)
    rows = _derive(pd.DataFrame([{**base_row, **values} for values in suggestions.values()]), base_row, None)
    fields = list(dict.fromkeys(field for values in suggestions.values() for field in values))
    return pd.concat([rows[fields], model.predict_details(rows)], axis=1).set_axis(list(suggestions))


def _axis(space: list[Dimension], field: str, center: float, size: int) -> np.ndarray:
    """The space's range of `field` on a log grid, else a decade either side of `center`."""
    dim = next((d for d in space if d.field == field), None)
    low, high = (
        (None, None)
        if dim is None
        else (dim.low, dim.high)
        if dim.choices is None
        else (min(dim.choices), max(dim.choices))
    )
    if dim is None or not 0 < low < high:
        low, high = center / 10, center * 10
    return np.geomspace(low, high, size)


def landscape(
    model: Predictor,
    base: RunConfig,
    space: list[Dimension],
    best: pd.Series,
    *,
    flops: float | None = None,
    size: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Predicted loss over a log grid of lr x batch tokens, shaped [batch, lr], on the slice through the tuner's best:
    its searched fields (N and D too under a compute budget) at its values, the rest at the base's, so that the best
    lies on the surface. Returns the lr axis, the batch axis, the losses and the slice's flat config."""
    base_row = config_to_flat(base)
    searched = [d.field for d in space] + ([SIZE, TOKENS] if flops is not None else [])
    row = {**base_row, **{field: best[field] for field in searched if field not in (LR, BATCH)}}
    if flops is not None:  # N was searched: a base's MoE counts no longer describe the slice (as in _derive)
        row.update({"model.n_params_total": np.nan, "model.n_params_active": np.nan})
    law = steplaw_suggestion(row)  # the centre when neither best nor base has one
    value = {}
    for field in (LR, BATCH):
        known = best.get(field, row.get(field))
        value[field] = law[field] if is_missing(known) else float(known)
    lr_axis, batch_axis = (_axis(space, field, value[field], size) for field in (LR, BATCH))
    grid_lr, grid_batch = np.meshgrid(lr_axis, batch_axis)
    grid = pd.DataFrame([row] * grid_lr.size)
    grid[LR], grid[BATCH] = grid_lr.ravel(), grid_batch.ravel()
    loss = model.predict(_derive(grid, base_row, flops)).reshape(grid_lr.shape)
    return lr_axis, batch_axis, loss, {**row, **value}


def runs_at(runs: pd.DataFrame, row: dict[str, Any]) -> pd.DataFrame:
    """The runs of the row's source at its N and D: the real points of its lr x batch slice."""
    point = pd.DataFrame([row])
    return runs[
        (runs["source"] == row["source"]).to_numpy()
        & np.isclose(effective_params(runs), effective_params(point)[0], rtol=1e-6)
        & np.isclose(tokens(runs), tokens(point)[0], rtol=1e-6)
    ]


@dataclass
class TuneResult:
    """What `tune_with_suggestions` found: the search's best configs, the suggestions scored at the base's N and D, the
    searched fields the model ignores, and, when a landscape was plotted, its slice and the runs drawn on it."""

    best: pd.DataFrame
    suggestions: pd.DataFrame
    ignored: list[str]
    pick: pd.DataFrame  # the base with the best pick's values: one flat row
    slice_at: dict[str, Any] | None = None
    drawn: pd.DataFrame | None = None


def tune_with_suggestions(
    model: Predictor,
    base: RunConfig,
    space: list[Dimension],
    *,
    fix: tuple[str, ...] = ("n_params", "tokens"),
    flops: float | None = None,
    n: int = 1024,
    top: int = 10,
    max_p_diverge: float | None = None,
    seed: int = 0,
    tuned: RunConfig | None = None,
    tuned_label: str = "tuned",
    plot: str | Path | None = None,
    runs: pd.DataFrame | None = None,
) -> TuneResult:
    """`tune` under a constraint (`fix` held at the base's values, or a compute budget `flops`), the StepLaw law's and
    (with `tuned`, a tuned smaller run) a Complete^(d)P transfer's suggestions scored beside it, and with `plot` a PNG
    of the predicted loss over lr x batch through the best pick, `runs` of that slice drawn on it."""
    if runs is not None and plot is None:
        raise ConfigError("runs: only drawn on the landscape plot; give plot too")
    if plot is not None:
        from ncpl.plots import figure_format, loss_landscape

        figure_format(plot)  # before the search, not after it
    fixed = {ALIASES.get(f, f) for f in fix}
    unknown = fixed - set(ALIASES.values())
    if unknown:
        raise ConfigError(
            f"fix: {sorted(unknown)} not supported; fix n_params, tokens or give a compute budget (flops)"
        )
    clash = fixed & {d.field for d in space}
    if clash and flops is None:
        raise ConfigError(f"fix: {sorted(clash)} are also in the search space")
    best = tune(model, base, space, flops=flops, n=n, top=top, max_p_diverge=max_p_diverge, seed=seed)
    suggestions = {"StepLaw law": steplaw_suggestion(base)}
    if tuned is not None:
        suggestions[f"Complete^(d)P from {tuned_label}"] = transfer_suggestion(tuned, base)
    result = TuneResult(
        best,
        score_suggestions(model, base, suggestions),
        ignored_fields(model, base, space, best.iloc[0], flops),
        pd.DataFrame([{**config_to_flat(base), **best.iloc[0].to_dict()}]),
    )
    if plot is not None:
        lr_axis, batch_axis, loss, at = landscape(model, base, space, best.iloc[0], flops=flops)
        result.slice_at, result.drawn = at, runs_at(runs, at) if runs is not None else None
        on_slice = {**suggestions, "StepLaw law": steplaw_suggestion(at)}  # scored on the plotted slice, as the map is
        picks = pd.concat(
            [
                pd.DataFrame(
                    {LR: at[LR], BATCH: at[BATCH], "pred_loss": best["pred_loss"].iloc[0]}, index=["tuner best"]
                ),
                score_suggestions(model, at, on_slice),
            ]
        )
        loss_landscape(
            lr_axis,
            batch_axis,
            loss,
            plot,
            picks=picks,
            runs=result.drawn if result.drawn is not None and len(result.drawn) else None,
            title=f"{at['source']}: {model.name} loss at N = {at['model.n_params']:.3g}, D = {at['data.tokens']:.3g}",
        )
    return result

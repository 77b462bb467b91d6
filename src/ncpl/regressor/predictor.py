"""The NCPL predictor: a pretrained LM reads the serialised config and predicts the residual over the
per-source law (`hparam-law` by default, or Chinchilla), for the final loss and for points of the loss curve.

With `members: K` in the training config, K networks are trained from seeds seed .. seed+K-1 on the
same validation split and their outputs averaged (a deep ensemble: Lakshminarayanan et al. 2017); the
interval is calibrated on the ensemble.

A saved model directory holds `predictor.json` (everything needed to predict: backbone, encoder,
serialization switches, field scalings, the residual law's constants, the target scaling, the divergence
trees, versions),
`model.safetensors` (the whole network, LoRA merged; further members in `model.member-K.safetensors`)
and `backbone/` (the backbone's config and the tokenizer with the number placeholder) and, saved after
a fit, `training_curves.png` (one per member) drawn from the fit's `train_log.jsonl`. Loading never unpickles.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ncpl.columns import usable
from ncpl.errors import ConfigError, NotFittedError
from ncpl.laws.schedule import CurveShape
from ncpl.predictors import Observed, Predictor
from ncpl.predictors.divergence import DivergenceClassifier
from ncpl.predictors.hparam_law import residual_law, with_law_fields
from ncpl.regressor import conformal, model_dir
from ncpl.regressor.conformal import POOLED
from ncpl.regressor.dataset import (
    MODEL_INPUTS,
    Collator,
    Example,
    Targets,
    build_examples,
    prefix_offset,
    seen_points,
)
from ncpl.regressor.network import NCPLNetwork
from ncpl.regressor.precision import DTYPES, for_inference, resolve
from ncpl.regressor.serialize import Serializer
from ncpl.regressor.train_config import TrainConfig
from ncpl.regressor.trainer import Trainer
from ncpl.regressor.training_range import axis_distances, clamp, field_ranges, size_ranges
from ncpl.schedules import PATH_FIELDS


def _versions() -> dict[str, str]:
    import transformers

    from ncpl import __version__

    return {"ncpl": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


class NCPL(Predictor):
    """Settings: the training config (a `TrainConfig` or the path of its YAML), where training writes its
    checkpoints (default: a temporary folder, removed when the fit ends), and the dtype of prediction. Fitted:
    `networks_` (one a member), `serializer_`, `targets_` (the residual law and the target's unit), `field_scales_`,
    `is_decoder_` and `hidden_` (of the backbone), `train_logs_` (each member's metrics per epoch, written and drawn
    into the model directory by `save`), and the interval: it widens by `interval_margins_` + `interval_slopes_` x
    distance nats at both ends, per source (POOLED for the rest), where the distances are the decades of log10 N and
    of log10 D beyond `train_ranges_` (source -> [log10 N min, max, log10 D min, max] of the training runs), each
    with its own slope (`ncpl.regressor.conformal`).
    `field_ranges_` (source -> field -> [min, max] of the numbers trained on): with `clamp_numbers`, a number beyond
    them is read at the edge (the residual extrapolates flat, as a tree's does; the law carries the trend).
    `divergence_`: the trees giving p_diverge (`ncpl.predictors.divergence`), None where the network's head does."""

    name = "ncpl"

    def __init__(
        self,
        config: TrainConfig | str | Path | None = None,
        work_dir: str | Path | None = None,
        inference_dtype: str = "auto",
    ):
        if config is None:
            config = TrainConfig()
        self.config = config if isinstance(config, TrainConfig) else TrainConfig.from_yaml(config)
        self.work_dir = Path(work_dir) if work_dir else None
        if inference_dtype not in DTYPES:
            raise ConfigError(f"inference_dtype: {inference_dtype!r} is not one of {', '.join(DTYPES)}")
        # prediction only (ncpl.regressor.precision): auto = bf16 where the CPU runs it faster than fp32, else fp32;
        # int8 on request
        self.inference_dtype = inference_dtype
        self._low_precision: dict[str, list[torch.nn.Module]] = {}  # the networks' reduced-precision copies, per dtype

    # --- training -------------------------------------------------------------------------------

    def fit(self, runs: pd.DataFrame, val: pd.DataFrame | None = None) -> NCPL:
        """Train on `runs`; `val` selects the checkpoint and calibrates the interval (default: carved from `runs`
        by `val_split`). The residual law is fitted on every run of `runs`, the validation runs carved from them too,
        as the trees fit theirs: the validation runs are held out from the network only. A law is a few parameters
        a source, and without them it may move (Marin's, a flat valley in an optimizer's lr offset: dev-OOD MAE
        0.0143 fitted on every dev training run, 0.0158-0.0193 on the networks' 90%) or, under the `largest`
        split, be a law of one model size, which cannot say how the loss moves with N."""
        accelerator = self._fit_seeded(runs, val, accelerator=None)
        accelerator.end_training()  # once, after every network of the fit: it ends the process group
        return self

    def _fit_seeded(self, runs: pd.DataFrame, val: pd.DataFrame | None, accelerator: Any) -> Any:
        import tempfile
        from contextlib import nullcontext

        # without a work_dir the checkpoints go to a temporary folder, removed when the fit ends
        scratch = nullcontext(self.work_dir) if self.work_dir else tempfile.TemporaryDirectory(prefix="ncpl-train-")
        with torch.random.fork_rng(), scratch as work_dir:  # seeded from `seed`; the caller's random state is kept
            torch.manual_seed(self.config.seed)
            return self._fit(runs, val, accelerator, Path(work_dir))

    def _fit(self, runs: pd.DataFrame, val: pd.DataFrame | None, accelerator: Any, work_dir: Path) -> Any:
        """Trains and calibrates this model; returns the accelerator its networks were trained with."""
        from ncpl.regressor.backbones import load_backbone
        from ncpl.regressor.encoders import field_scales
        from ncpl.splits import validation_split

        cfg = self.config
        everything = runs
        if val is None:
            runs, val = validation_split(runs, cfg.val_split, cfg.val_frac, cfg.seed)
        if not usable(runs).any():
            raise ConfigError("final_loss: no converged training runs; give runs with a finite final_loss")
        if not usable(val).any():  # they choose the checkpoint and calibrate the interval
            raise ConfigError(
                f"val: none of the {len(val)} validation runs converged; raise val_frac or give converged runs (--val)"
            )
        baseline = residual_law(cfg.baseline, cfg.baseline_fit_on).fit(everything)
        self.divergence_ = DivergenceClassifier(seed=cfg.seed).fit(everything) if cfg.divergence == "trees" else None
        self.train_ranges_ = size_ranges(runs)
        ok = runs[usable(runs)]
        residual = ok["final_loss"].to_numpy(float) - baseline.predict(ok)
        # A robust unit (1.4826 x the median absolute deviation: the std of a normal bulk). With the std, a few runs
        # that blew up without diverging set the unit (Marin: 0.14 nats), the bulk's residuals all lie within a
        # tenth of it, and the Huber loss is quadratic for everything but those few.
        spread = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
        shape = CurveShape().fit(everything) if cfg.curve_law == "schedule" else None
        self.targets_ = Targets(baseline, spread or float(np.std(residual)) or 1.0, shape)
        runs, val = self._with_law_fields(runs), self._with_law_fields(val)

        backbone = load_backbone(cfg.backbone)
        self.is_decoder_, self.hidden_ = backbone.is_decoder, backbone.hidden_size
        self.serializer_ = Serializer.for_config(cfg, backbone.tokenizer, self.is_decoder_)
        backbone.model.resize_token_embeddings(
            len(backbone.tokenizer), mean_resizing=False
        )  # the placeholder's embedding is never read
        train_examples = build_examples(
            runs,
            self.serializer_,
            self.targets_,
            cfg.max_curve_points,
            cfg.prefix_points,
            np.random.default_rng(cfg.seed),
            cfg.prefix_target,
        )
        self.field_ranges_ = field_ranges(  # the lr path's range at the end of the runs is not its range along them
            ((str(r["source"]), self.serializer_.encode(r)) for r in runs.to_dict("records")), skip=PATH_FIELDS
        )
        values: dict[str, list[float]] = defaultdict(list)
        for example in train_examples:
            for name, value in zip(example.encoded.num_fields, example.encoded.num_values):
                values[name].append(value)
        self.field_scales_ = field_scales(values) if cfg.encoder == "mlp" else {}
        val = val.reset_index(drop=True)
        val_examples = [self._example(row) for row in val.to_dict("records")]
        val_loss = np.where(usable(val), pd.to_numeric(val["final_loss"], errors="coerce"), np.nan)
        to_loss = lambda target: self.targets_.to_loss(val, target, val["data.tokens"].to_numpy(float))  # noqa: E731
        self.networks_, self.train_logs_, self._low_precision = [], [], {}
        for k in range(cfg.members):
            member = cfg.model_copy(update={"seed": cfg.seed + k})
            if (
                k
            ):  # a fresh copy of the pretrained backbone, and the member's own initialisation of the encoder and head
                torch.manual_seed(member.seed)
                backbone = load_backbone(cfg.backbone)
                backbone.model.resize_token_embeddings(len(self.serializer_.tokenizer), mean_resizing=False)
            network = NCPLNetwork(backbone.model, self.hidden_, self.is_decoder_, cfg.encoder, **cfg.encoder_options())
            trainer = Trainer(
                member,
                network,
                self._collator(),
                work_dir if cfg.members == 1 else work_dir / f"member-{k}",
                to_loss=to_loss,
                accelerator=accelerator,
            )
            accelerator = trainer.accelerator
            trained = trainer.fit(train_examples, val_examples, val_loss)
            if trainer.whole_state is not None:  # sharded in place by fully_shard: keep a plain, whole copy
                trained = self._network(backbone.model.config, trainer.whole_state)
            self.networks_.append(trained.eval())
            self.train_logs_.append(trainer.read_log())
        self.interval_margins_, self.interval_slopes_ = self._calibrate_interval(val[usable(val)])
        if cfg.calibrate_extrapolation and not self.interval_slopes_:
            self.interval_slopes_ = self._extrapolation_slopes(everything, work_dir, accelerator)
        return accelerator

    def _calibrate_interval(self, val: pd.DataFrame) -> tuple[dict[str, float], dict[str, float]]:
        """m0 and k of the interval's margin (ncpl.regressor.conformal) from the validation runs: k only from those
        beyond the training range (the `largest` split's step to a larger model), {} without any (the `random`
        split; `calibrate_extrapolation` then calibrates k on a second network, `_extrapolation_slopes`). The
        validation runs also chose the checkpoint and the law saw them, so the margins are optimistic (how much is
        not measured yet)."""
        if val.empty:
            return {}, {}
        self.interval_margins_, self.interval_slopes_ = {}, {}
        return conformal.calibrate(*self._conformity(val))

    def _conformity(self, runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The conformity score of each run under this model's interval, its source and its distance beyond the
        training runs."""
        score = conformal.scores(self._predict_details(runs), runs["final_loss"].to_numpy(float))
        return score, runs["source"].astype(str).to_numpy(), axis_distances(runs, self.train_ranges_)

    def _extrapolation_slopes(self, runs: pd.DataFrame, work_dir: Path, accelerator: Any) -> conformal.Slopes:
        """k of the interval's margin m0 + k_N d_N + k_D d_D, for a model whose validation runs all lie inside its
        training range. Step 1: a calibrating model (`extrapolation_members` networks, one by default), trained the
        same way on `runs` less each source's largest size(s) (`largest_sizes`), predicts those; step 2
        (`extrapolation_steps`): another, trained without the next largest size(s) too, predicts both; and so on.
        Their calibrated intervals (m0 included) must widen by k per decade beyond their training range to hold
        COVERAGE of the runs they did not see, pooled. The step they measure is the one a user takes from the largest
        training model to a larger one; k is assumed to carry over to the step beyond the full model's range. A
        network's miss at a size it never saw is mostly one shift of the whole size, so one step is one draw of it
        (StepLaw's k_N over seeds 42-46 of the test protocol: 0 to 0.11 a decade)."""
        from ncpl.splits import largest_sizes

        runs = runs.reset_index(drop=True)
        # its p_diverge is never read: no trees to fit
        config = self.config.model_copy(
            update={
                "calibrate_extrapolation": False,
                "members": self.config.extrapolation_members,
                "divergence": "network",
            }
        )
        held = pd.Series(False, index=runs.index)
        conformity = []
        for step in range(1, self.config.extrapolation_steps + 1):
            more = largest_sizes(runs[~held], self.config.val_frac).reindex(runs.index, fill_value=False)
            if not more.any():  # no size left to step from: another network would repeat the last one's work
                break
            held |= more
            held_out = runs[held & usable(runs)]
            if held_out.empty or not usable(runs[~held]).any():
                break
            calibrator = NCPL(
                config,
                work_dir=work_dir / ("extrapolation" if step == 1 else f"extrapolation-{step}"),
                inference_dtype=self.inference_dtype,
            )
            calibrator._fit_seeded(runs[~held], None, accelerator)
            conformity.append(calibrator._conformity(held_out.reset_index(drop=True)))
        if not conformity:
            return {}
        return conformal.slopes_beyond(*(np.concatenate(parts) for parts in zip(*conformity)))

    def _with_law_fields(self, configs: pd.DataFrame) -> pd.DataFrame:
        return with_law_fields(configs, self.targets_.baseline if self.config.law_fields else None)

    def _example(
        self, row: dict[str, Any], fraction: float | None = None, seen: list[tuple[float, float]] | tuple = ()
    ) -> Example:
        encoded = self.serializer_.encode(row, fraction, seen)
        if self.config.clamp_numbers and str(row["source"]) in self.field_ranges_:
            clamp(encoded, self.field_ranges_[str(row["source"])])
        return Example(encoded, math.nan, fraction is None, False)

    def _collator(self) -> Collator:
        return Collator(self.serializer_, self.field_scales_)

    # --- prediction -----------------------------------------------------------------------------

    @torch.inference_mode()
    def _outputs(self, examples: list[Example], batch_size: int | None = None) -> np.ndarray:
        """Raw head outputs of every member, shape (members, examples, 4). Batched by sequence length, no batch mixing
        two lengths (no pad tokens), equal token ids side by side (a batch of one layout: a decoder computes the shared
        prefix once)."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError("this NCPL model is not trained: call fit() or load a model directory")
        batch_size = batch_size or self.config.eval_batch_size
        ids = [e.encoded.input_ids for e in examples]
        order = sorted(range(len(examples)), key=lambda i: (len(ids[i]), ids[i]))
        lengths = np.array([len(ids[i]) for i in order])
        starts = np.flatnonzero(np.diff(lengths, prepend=-1))  # where each length begins
        batches = [
            order[s : min(s + batch_size, end)]
            for begin, end in zip(starts, [*starts[1:], len(order)])
            for s in range(begin, end, batch_size)
        ]
        collate = self._collator()
        networks = self._inference_networks()
        out = np.empty((len(networks), len(examples), 4), dtype=np.float64)
        for rows in batches:
            batch = collate([examples[i] for i in rows])
            for k, network in enumerate(networks):
                network.eval()
                device = next(network.parameters()).device
                out[k, rows] = network(**{key: batch[key].to(device) for key in MODEL_INPUTS}).float().cpu().numpy()
        return out

    def resolved_dtype(self) -> str:
        """The dtype the networks run in: `inference_dtype` resolved for the device they are on."""
        return resolve(self.inference_dtype, next(self.networks_[0].parameters()).device)

    def _inference_networks(self) -> list[torch.nn.Module]:
        """The members in `resolved_dtype()`; reduced-precision copies are made once and kept."""
        dtype = self.resolved_dtype()
        if dtype == "fp32":
            return self.networks_
        if dtype not in self._low_precision:
            self._low_precision[dtype] = [for_inference(network, dtype) for network in self.networks_]
        return self._low_precision[dtype]

    def __sklearn_is_fitted__(self) -> bool:
        return bool(getattr(self, "networks_", None))

    def _predict_details(self, configs: pd.DataFrame) -> pd.DataFrame:
        """pred_loss, its 10-90% interval pred_loss_lo / pred_loss_hi, and p_diverge, one row per config."""
        configs = self._with_law_fields(configs.reset_index(drop=True))
        outputs = self._outputs([self._example(row) for row in configs.to_dict("records")])
        out = outputs.mean(axis=0)  # the loss is linear in the outputs: this averages the members' losses and quantiles
        n_tokens = configs["data.tokens"].to_numpy(float)
        to_loss = lambda column: self.targets_.to_loss(configs, out[:, column], n_tokens)  # noqa: E731
        low, high = to_loss(1), to_loss(2)
        low, high = np.minimum(low, high), np.maximum(low, high)
        middle = (low + high) / 2  # a negative margin shrinks an interval at most to its middle
        margin = conformal.margin(
            configs["source"].astype(str),
            self.interval_margins_,
            self.interval_slopes_,
            axis_distances(configs, self.train_ranges_),
        )
        return pd.DataFrame(
            {
                "pred_loss": to_loss(0),
                "pred_loss_lo": np.minimum(low - margin, middle),
                "pred_loss_hi": np.maximum(high + margin, middle),
                "p_diverge": (
                    self.divergence_.predict_proba(configs)
                    if self.divergence_ is not None
                    else (1 / (1 + np.exp(-outputs[:, :, 3]))).mean(axis=0)
                ),
            }
        )

    def _predict(self, configs: pd.DataFrame) -> np.ndarray:
        return self._predict_details(configs)["pred_loss"].to_numpy()

    def _predict_curve(self, configs: pd.DataFrame, fractions: np.ndarray) -> np.ndarray:
        configs = self._with_law_fields(configs.reset_index(drop=True))
        rows = configs.to_dict("records")
        examples = [self._example(row, float(f)) for row in rows for f in fractions]
        out = self._outputs(examples)[:, :, 0].mean(axis=0).reshape(len(rows), len(fractions))
        n_tokens = configs["data.tokens"].to_numpy(float)
        return np.stack(
            [self.targets_.to_loss(configs, out[:, j], f * n_tokens) for j, f in enumerate(fractions)], axis=1
        )

    @property
    def reads_prefix(self) -> bool:
        return self.config.prefix_points > 0

    def _predict_curve_seen(
        self, configs: pd.DataFrame, fractions: np.ndarray, observed: list[Observed | None]
    ) -> np.ndarray:
        """The curve of each config given the points of it measured so far, as the network was trained to read them
        (their residuals over the law, up to `prefix_points` of them, `seen_points`); fraction 1 asks the final loss."""
        configs = self._with_law_fields(configs.reset_index(drop=True))
        n_tokens = configs["data.tokens"].to_numpy(float)
        examples, offsets = [], np.zeros(len(configs))
        for i, row in enumerate(configs.to_dict("records")):
            seen: list[tuple[float, float]] = []
            if observed[i] is not None:
                at, loss = observed[i]
                residual = self.targets_.to_target(configs.iloc[[i] * len(at)], loss, at * n_tokens[i])
                seen = seen_points(at, residual, self.config.prefix_points)
                offsets[i] = prefix_offset(residual, self.config.prefix_target)
            examples += [self._example(row, None if np.isclose(f, 1.0) else float(f), seen) for f in fractions]
        out = self._outputs(examples)[:, :, 0].mean(axis=0).reshape(len(configs), len(fractions)) + offsets[:, None]
        return np.stack(
            [self.targets_.to_loss(configs, out[:, j], f * n_tokens) for j, f in enumerate(fractions)], axis=1
        )

    # --- saving ---------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        return {
            "train_config": self.config.model_dump(mode="json"),
            "backbone": self.config.backbone,
            "is_decoder": self.is_decoder_,
            "hidden_size": self.hidden_,
            "encoder": self.config.encoder,
            "numbers_as_text": self.config.numbers_as_text,
            "serialization": self.config.serialization,
            "field_scales": self.field_scales_,
            "baseline": self.targets_.baseline.get_state(),
            "target_scale": self.targets_.scale,
            "curve_shape": self.targets_.shape.get_state() if self.targets_.shape is not None else None,
            "interval_margins": self.interval_margins_,
            "interval_slopes": self.interval_slopes_,
            "train_ranges": self.train_ranges_,
            "field_ranges": self.field_ranges_,
            "divergence": self.divergence_.get_state() if self.divergence_ is not None else None,
            "versions": _versions(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        # a directory saved before `baseline` existed learned the residual over Chinchilla, one saved before
        # `fourier_min_period` existed has the Fourier encoder's first periods (0.25 decades), and one saved before
        # `serialization` existed read the verbose text, one saved before `members` existed holds one network, one
        # saved before `divergence` existed gives the network's p_diverge, and one saved before `curve_law` existed read
        # the law at a curve point's tokens
        old = {
            "baseline": "chinchilla",
            "fourier_min_period": 0.25,
            "serialization": "verbose",
            "members": 1,
            "divergence": "network",
            "curve_law": "tokens",
        }
        self.config = TrainConfig.model_validate({**old, **state["train_config"]})
        self.is_decoder_, self.hidden_ = state["is_decoder"], state["hidden_size"]
        self.field_scales_ = state["field_scales"]
        baseline = residual_law(self.config.baseline, self.config.baseline_fit_on)
        baseline.set_state(state["baseline"])
        shape = CurveShape.from_state(state["curve_shape"]) if state.get("curve_shape") else None
        self.targets_ = Targets(baseline, state["target_scale"], shape)
        # directories saved before per-source margins had one margin, and before that none
        self.interval_margins_ = state.get("interval_margins", {POOLED: state.get("interval_margin", 0.0)})
        self.interval_slopes_, self.train_ranges_ = (
            conformal.as_axes(state.get("interval_slopes", {})),
            state.get("train_ranges", {}),
        )  # none: no widening
        self.field_ranges_ = state.get("field_ranges", {})  # none: numbers are read as they are
        self.divergence_ = DivergenceClassifier.from_state(state["divergence"]) if state.get("divergence") else None

    def save(self, directory: str | Path) -> Path:
        """Write the model directory (only the main process does, when several trained it)."""
        from accelerate import PartialState

        directory = Path(directory)
        if not PartialState().is_main_process:
            return directory
        model_dir.write_networks(directory, self.networks_, self.serializer_.tokenizer)
        super().save(directory)
        model_dir.write_training_logs(directory, self.train_logs_)
        return directory

    @classmethod
    def from_directory(cls, directory: str | Path, state: dict[str, Any]) -> NCPL:
        model = cls()
        model.set_state(state)
        tokenizer, backbone_config, weights = model_dir.read_backbone(Path(directory), model.config.members)
        model.serializer_ = Serializer.for_config(model.config, tokenizer, model.is_decoder_)
        model.networks_ = [model._network(backbone_config, model_dir.read_weights(path)) for path in weights]
        return model

    def _network(self, backbone_config: Any, state: dict[str, torch.Tensor]) -> NCPLNetwork:
        """A plain network of this model's architecture, built from the backbone's config, holding `state`."""
        from transformers import AutoModel

        network = NCPLNetwork(
            AutoModel.from_config(backbone_config),
            self.hidden_,
            self.is_decoder_,
            self.config.encoder,
            **self.config.encoder_options(),
        )
        network.load_state_dict(state, strict=True)
        return network.eval()

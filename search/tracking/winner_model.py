"""The best configuration's trained model as an MLflow pyfunc model (what `search.tracking.model_export` logs).

MLflow stores this file with the model and runs it to load it ("models from code"), so nothing here is
pickled: the model is rebuilt from its run config (`config.json`) and its weights (`weights.safetensors`, plain
tensors, one set per model of the partition) with `mtl_core`, which travels with the model (`code_paths`).
A frozen text encoder is not stored: it is loaded by its name (`model.text_encoder`: `tiny`, `minilm`'s package,
or a local path), as training did.

Input: a dict of arrays, one row per clip, padded (masks True on real steps):

    text_ids    int64   [B, L]          token ids (the dataset's `indexes`)
    text_mask   bool    [B, L]
    video       float32 [B, Tv, 1024]   I3D features
    video_mask  bool    [B, Tv]         all False: the clip has no video
    audio       float32 [B, Ta, 128]    VGGish features
    audio_mask  bool    [B, Ta]

Output: a DataFrame, one row per clip: `pred/<task>` (0/1) and `prob/<task>` (the positive class's
probability) for each task. Clips are evaluated as the training run evaluated its test split (batches of
`train.eval_batch_size` in the given order, each padded to its own longest clip), so the whole test split in its
order gives the run's own test predictions.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

INPUTS = ("text_ids", "text_mask", "video", "video_mask", "audio", "audio_mask")
CONFIG, WEIGHTS = "config", "weights"  # the model's artifacts


def group_key(group: int, name: str) -> str:
    """A weight's key in weights.safetensors: `<model of the partition>/<state-dict key>`."""
    return f"{group}/{name}"


def _used(mask: np.ndarray, cap: int) -> int:
    """Steps a batch needs: up to its last real step (at least 1, at most `cap`), as SplitData.batch pads."""
    rows = mask.any(0).nonzero()[0]
    return max(1, min(cap, int(rows[-1]) + 1 if len(rows) else 1))


class WinnerModel(PythonModel):
    def load_context(self, context) -> None:
        from safetensors.torch import load_file

        from mtl_core.config import build_config
        from mtl_core.model.text_encoder import load_text_encoder
        from mtl_core.train import build_model

        with open(context.artifacts[CONFIG]) as f:
            self.cfg = build_config(json.load(f))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.encoder = load_text_encoder(self.cfg.model.text_encoder)
        weights = load_file(context.artifacts[WEIGHTS])
        self.models = []
        for g, tasks in enumerate(self.cfg.partition()):
            model = build_model(replace(self.cfg, tasks=tuple(tasks), groups=None), self.encoder)
            prefix = group_key(g, "")
            model.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
            self.models.append(model.to(self.device).eval())

    @torch.no_grad()
    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        from mtl_core.data.text_cache import compute_hidden
        from mtl_core.model.hiccap import ModelInputs
        from mtl_core.precision import autocast

        x = {k: np.asarray(model_input[k]) for k in INPUTS}
        d, cfg = self.cfg.data, self.cfg
        n = len(x["text_ids"])
        ids = x["text_ids"].astype(np.int64)
        rows = [ids[i][x["text_mask"][i].astype(bool)][: d.text_max_len] for i in range(n)]
        hidden = None
        if cfg.model.freeze_text:  # the frozen encoder's outputs, computed as the training cache computes them
            hidden = compute_hidden(self.encoder.model.to(self.device), rows, self.device)
        lengths = {"video": d.video_len, "audio": d.audio_len}
        out: dict[str, list] = {}
        for start in range(0, n, cfg.train.eval_batch_size):
            idx = np.arange(start, min(n, start + cfg.train.eval_batch_size))
            t_len = np.array([len(rows[i]) for i in idx])
            L = max(1, int(t_len.max()))
            text = np.zeros((len(idx), L), np.int64)
            for r, i in enumerate(idx):
                text[r, :t_len[r]] = rows[i]
            text_mask = np.arange(L)[None, :] < t_len[:, None]
            feats = {}
            for name, cap in lengths.items():
                mask = x[f"{name}_mask"][idx].astype(bool)[:, :cap]
                steps = _used(mask, cap)
                feats[name] = torch.from_numpy(np.ascontiguousarray(x[name][idx, :steps], dtype=np.float32))
                feats[f"{name}_mask"] = torch.from_numpy(mask[:, :steps].copy())
            h = None
            if hidden is not None:
                h = np.zeros((len(idx), L, hidden.values.shape[1]), np.float32)
                for r, i in enumerate(idx):
                    h[r, :t_len[r]] = hidden.row(i)
                h = torch.from_numpy(h)
            present = torch.stack([torch.from_numpy(t_len > 0), feats["video_mask"].any(1), feats["audio_mask"].any(1)], 1)
            inputs = ModelInputs(text_ids=torch.from_numpy(text), text_mask=torch.from_numpy(text_mask), present=present,
                                 text_hidden=h, **feats).to(self.device)
            for model in self.models:
                with autocast(cfg.train.precision, self.device):
                    logits = model(inputs)
                for t, lg in logits.items():
                    lg = lg.float().cpu()
                    out.setdefault(f"pred/{t}", []).append(lg.argmax(1).numpy().astype(np.int64))
                    out.setdefault(f"prob/{t}", []).append(lg.softmax(1)[:, 1].numpy().astype(np.float64))
        order = [f"{kind}/{t}" for t in cfg.tasks for kind in ("pred", "prob")]
        return pd.DataFrame({k: np.concatenate(out[k]) if n else np.zeros(0) for k in order})


set_model(WinnerModel())

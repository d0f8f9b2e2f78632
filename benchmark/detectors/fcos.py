"""A dense, anchor-free FCOS detector (Tian et al., ICCV 2019) with pluggable backbones.

Two presets share one head, one loss and one post-processing, so every method sees the same
interface:

* ``tiny_fcos`` / ``tiny_fcos_xs``: a 5-stage conv net (BatchNorm) with a 3-level FPN on strides
  8/16/32, built from scratch; 0.75 M / 0.17 M parameters; ~90 / ~200 img/s training at 128 px on
  2 CPU cores. This is the CPU benchmark detector.
* ``fcos_r50``: torchvision's ResNet-50 + FPN (P3-P5) with the same head; ``pretrained=True``
  loads torchvision's ImageNet weights (``ResNet50_Weights.IMAGENET1K_V2``; needs internet once).
  For GPUs and real data.

Head: a shared tower of ``head_convs`` 3x3 convs (GroupNorm + ReLU) and three outputs: class
logits (sigmoid, C), box distances l/t/r/b (``exp(scale * x) * stride``) and centre-ness.
Targets: FCOS assignment with centre sampling (radius 1.5 strides), per-level size ranges, the
smallest box wins ambiguous locations. Locations inside ignore regions get no classification loss.
Losses: sigmoid focal loss (alpha 0.25, gamma 2) / #positives, GIoU loss weighted by the
centre-ness target, centre-ness BCE. Scores at inference: sqrt(p_cls * p_ctr), class-wise NMS 0.6.

**Oriented boxes** (``oriented = true`` in a matrix's ``[detector]`` table, for every preset; off by
default; DOTA Task1): Rotated FCOS as in mmrotate's ``RotatedFCOSHead`` (Tian et al.'s FCOS with an
angle branch): one more 3x3 conv on the shared tower predicts the angle (radians, unbounded), the
l/t/r/b distances are measured in the object's own rotated frame, and a location is a positive
when it lies inside the rotated box (each side widened to at least the location's stride, so thin
diagonal objects between grid points still get one) and within ``center_radius`` strides of its
centre along the box's axes (centre-ness in the box frame too). Targets are the minimum-area rectangles of the
annotated polygons (``benchmark.detectors.obb.poly_to_rbox``, long side first). Box loss, weighted
by the centre-ness target as above: **ProbIoU** (Llerena et al. 2021, YOLO-OBB's box loss: the
Hellinger distance between the boxes' Gaussians; invariant to theta + pi and to the long/short side
swap, so no angle-boundary problem) + ``angle_loss_weight`` (0.5) x ``sin^2(2 dtheta)`` (ProbIoU is
blind to a square's angle; this term is zero for every reading of the target box) +
``hull_loss_weight`` (1.0) x GIoU of the boxes' enclosing horizontal boxes (strong centre and size
gradients where the Gaussians barely overlap; on synthetic DOTA at the smoke schedule, 300
patches, seeds 0/1, it lifted Task1 mAP50 from 0.195/0.198 to 0.274/0.189 and Task2 from
0.178/0.156 to 0.310/0.236). Training views also turn by multiples of 90 degrees (``rotate90``;
aerial images have no "up"). ``predict`` returns ``Prediction.polygons`` (N, 8), the rotated boxes'
corners (not clipped, like DOTA's ground truth), ``boxes`` their enclosing boxes clipped to the
image, after class-wise polygon NMS (exact polygon IoU, ``obb.polygon_nms``). Changing
``oriented`` adds the angle conv after every other layer is initialised, so the remaining
weights are those of the horizontal detector with the same seed.

Measured (``smoke`` matrix on synthetic DOTA v4, ``tiny_fcos_xs``, 360 iterations, seeds 0/1,
supervised + random / entropy, 300 patches; mean of the 4 cells): oriented Task1 mAP50 0.257 and
Task2 0.286 (every cell's Task1 within 0.035 of its Task2); the horizontal detector on the same
data, its boxes scored as Task1 polygons: Task1 0.215, Task2 0.286.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, generalized_box_iou_loss, sigmoid_focal_loss

from benchmark.detectors.base import Batch, Prediction


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class TinyBackbone(nn.Module):
    """5 stages (stride 2 each), two 3x3 conv-BN-ReLU per stage; returns C3, C4, C5.

    ``patchify_stem``: stages 1-2 are replaced by one 4x4 stride-4 conv (as in ConvNeXt) and one
    3x3 conv: the full-resolution layers dominate the CPU time of a tiny network."""

    def __init__(self, widths: tuple[int, ...], patchify_stem: bool = False) -> None:
        super().__init__()
        stages, cin = [], 3
        if patchify_stem:
            w = widths[1]
            stem = nn.Sequential(nn.Conv2d(3, w, 4, 4, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
            stages += [nn.Identity(), nn.Sequential(stem, conv_bn(w, w))]
            widths, cin = widths[2:], w
        for w in widths:
            stages.append(nn.Sequential(conv_bn(cin, w, 2), conv_bn(w, w)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.out_channels = [s[-1][0].out_channels for s in stages[2:]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, st in enumerate(self.stages):
            x = st(x)
            if i >= 2:
                feats.append(x)
        return feats


class ResNetBackbone(nn.Module):
    """torchvision ResNet-50 trunk returning C3, C4, C5 (strides 8, 16, 32)."""

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import ResNet50_Weights, resnet50

        net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2 if pretrained else None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.layers = nn.ModuleList([net.layer2, net.layer3, net.layer4])
        self.out_channels = [512, 1024, 2048]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], ch: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, ch, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [lconv(f) for lconv, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        return [oconv(x) for oconv, x in zip(self.output, lat, strict=True)]


class Head(nn.Module):
    def __init__(
        self, ch: int, num_classes: int, n_convs: int, n_levels: int, oriented: bool = False
    ) -> None:
        super().__init__()
        layers = []
        for _ in range(n_convs):
            layers += [
                nn.Conv2d(ch, ch, 3, padding=1),
                nn.GroupNorm(min(8, ch // 4), ch),
                nn.ReLU(inplace=True),
            ]
        self.tower = nn.Sequential(*layers)
        self.cls = nn.Conv2d(ch, num_classes, 3, padding=1)
        self.reg = nn.Conv2d(ch, 4, 3, padding=1)
        self.ctr = nn.Conv2d(ch, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(n_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls.bias, -math.log((1 - 0.01) / 0.01))
        # the angle (radians) from the shared tower; made last, so the other weights do not depend on it
        self.angle: nn.Conv2d | None = None
        if oriented:
            self.angle = nn.Conv2d(ch, 1, 3, padding=1)
            nn.init.normal_(self.angle.weight, std=0.01)
            nn.init.zeros_(self.angle.bias)

    def forward(self, feats: list[torch.Tensor]):
        cls, reg, ctr, ang = [], [], [], []
        for i, f in enumerate(feats):
            t = self.tower(f)
            cls.append(self.cls(t))
            reg.append(self.reg(t) * self.scales[i])
            ctr.append(self.ctr(t))
            if self.angle is not None:
                ang.append(self.angle(t))
        return cls, reg, ctr, ang


@dataclass(frozen=True)
class FCOSConfig:
    num_classes: int
    backbone: str = "tiny"  # tiny | resnet50
    widths: tuple[int, ...] = (16, 32, 64, 96, 128)
    fpn_channels: int = 64
    head_convs: int = 2
    strides: tuple[int, ...] = (8, 16, 32)
    size_ranges: tuple[float, ...] = (0.0, 32.0, 64.0, math.inf)  # max(l,t,r,b) bounds per level
    center_radius: float = 1.5
    score_thresh: float = 0.05
    nms_thresh: float = 0.6
    max_detections: int = 100
    pre_nms_topk: int = 1000
    pretrained: bool = False
    patchify_stem: bool = False
    oriented: bool = False  # rotated boxes: an angle output, ProbIoU loss, Prediction.polygons
    angle_loss_weight: float = 0.5  # weight of the sin^2(2 dtheta) term (oriented only)
    hull_loss_weight: float = 1.0  # weight of GIoU between enclosing boxes (oriented only)
    rotate90: bool = True  # oriented training views also turn by multiples of 90 degrees


def _smallest_match(ok: torch.Tensor, area: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per location (``ok`` (..., L, G): the candidate objects along the last dimension), the candidate
    object of smallest ``area`` (FCOS's rule for a location inside several boxes): its index, and
    whether the location has any candidate. Ties go to the first object (``min``'s documented
    rule), so objects padded at the end of a batch never change a pick."""
    area = torch.where(ok, area, math.inf)
    best_area, best = area.min(-1)
    return best, torch.isfinite(best_area)


def _mark_ignored(lab: torch.Tensor, ig: torch.Tensor, ig_valid: torch.Tensor, x, y) -> torch.Tensor:
    """Background locations (label < 0) strictly inside an ignore object's box become ignored (-2).
    ``lab`` (b, L); ``ig`` (b, G, 4) the images' ignore boxes, padded; ``ig_valid`` (b, G)."""
    if not ig_valid.any():
        return lab
    ig = ig[:, None]  # (b, 1, G, 4) against x, y (L, 1)
    inside = (x > ig[..., 0]) & (x < ig[..., 2]) & (y > ig[..., 1]) & (y < ig[..., 3])
    in_ig = (inside & ig_valid[:, None]).any(-1)
    return torch.where(in_ig & (lab < 0), -2, lab)


def _padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image rows (G_i, ...) -> one zero-padded tensor (b, max G_i, ...) and its validity (b, G)."""
    counts = torch.tensor([len(r) for r in rows])
    valid = torch.arange(int(counts.max()) if len(rows) else 0)[None] < counts[:, None]
    flat = torch.cat(rows)
    out = flat.new_zeros((len(rows), valid.shape[1], *flat.shape[1:]))
    out[valid] = flat
    return out, valid


def _assigned(rows: torch.Tensor, best: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The rows (b, G, K) of the objects ``best`` (b, L) at the positive locations ``pos``, zeros
    elsewhere: (b, L, K)."""
    picked = rows.gather(1, best[..., None].expand(-1, -1, rows.shape[-1]))
    return torch.where(pos[..., None], picked, 0.0)


# a batch's (images x locations x objects) assignment tensors are built for groups of images of
# at most this many elements each (a few MB; batches of large images with many objects are split)
_ASSIGN_ELEMENTS = 1 << 21


def _image_groups(counts: list[int], n_locs: int, cap: int | None = None) -> list[slice]:
    """Consecutive images in groups whose (images x locations x most objects) stays within ``cap``
    (default ``_ASSIGN_ELEMENTS``; a group holds at least one image)."""
    cap = _ASSIGN_ELEMENTS if cap is None else cap
    groups, start, most = [], 0, 0
    for i, n in enumerate(counts):
        if i > start and (i - start + 1) * n_locs * max(most, n) > cap:
            groups.append(slice(start, i))
            start, most = i, 0
        most = max(most, n)
    groups.append(slice(start, len(counts)))
    return groups


class FCOS(nn.Module):
    """The detector (see the module docstring)."""

    def __init__(self, cfg: FCOSConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        if cfg.backbone == "tiny":
            self.backbone: nn.Module = TinyBackbone(cfg.widths, cfg.patchify_stem)
        elif cfg.backbone == "resnet50":
            self.backbone = ResNetBackbone(cfg.pretrained)
        else:
            raise ValueError(f"unknown backbone {cfg.backbone!r}")
        self.fpn = FPN(self.backbone.out_channels, cfg.fpn_channels)
        self.head = Head(cfg.fpn_channels, cfg.num_classes, cfg.head_convs, len(cfg.strides), cfg.oriented)
        self.oriented = bool(cfg.oriented)
        self._loc_cache: dict[tuple, list[torch.Tensor]] = {}

    def __getstate__(self):
        # copies (deepcopy for a teacher, pickling) leave the last call's graph-attached tensors behind
        state = self.__dict__.copy()
        state.pop("last_outputs", None)
        return state

    # ------------------------------------------------------------------------------ internals
    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        c = self.backbone(x)
        return c, self.fpn(c)

    def raw(self, batch: Batch):
        """Backbone and FPN features, class logits, raw box regressions and centre-ness logits."""
        return self.raw_all(batch)[:5]

    def raw_all(self, batch: Batch):
        """``raw`` plus the angle maps (radians, one per level; empty unless ``oriented``)."""
        c, p = self.features(batch.images)
        cls, reg, ctr, ang = self.head(p)
        return c, p, cls, reg, ctr, ang

    def locations(self, shapes: list[tuple[int, int]], device: torch.device) -> list[torch.Tensor]:
        key = (tuple(shapes), str(device))
        locs = self._loc_cache.get(key)
        if locs is None:
            locs = []
            for (h, w), s in zip(shapes, self.cfg.strides, strict=True):
                ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s
                xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s
                yy, xx = torch.meshgrid(ys, xs, indexing="ij")
                locs.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
            if len(self._loc_cache) > 16:
                self._loc_cache.clear()
            self._loc_cache[key] = locs
        return locs

    @staticmethod
    def _flat(maps: list[torch.Tensor]) -> torch.Tensor:
        """(B, K, H, W) per level -> (B, sum HW, K)."""
        return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)

    def _decode(self, reg: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for r, s in zip(reg, self.cfg.strides, strict=True):
            out.append(torch.exp(r.clamp(max=8.0)) * s)
        return out

    def _location_tables(self, locs: list[torch.Tensor]):
        """All levels' locations (L, 2) with each one's size range (lo, hi) and stride, (L,) each."""
        all_locs = torch.cat(locs, 0)
        lo = torch.cat([torch.full((len(l_),), self.cfg.size_ranges[i]) for i, l_ in enumerate(locs)])
        hi = torch.cat([torch.full((len(l_),), self.cfg.size_ranges[i + 1]) for i, l_ in enumerate(locs)])
        stride = torch.cat(
            [torch.full((len(l_),), float(s)) for l_, s in zip(locs, self.cfg.strides, strict=True)]
        )
        return all_locs, lo.to(all_locs), hi.to(all_locs), stride.to(all_locs)

    @torch.no_grad()
    def assign(self, targets: list[dict], locs: list[torch.Tensor]):
        """FCOS targets: per image (labels (L,) with -1 = background, -2 = ignored, boxes (L, 4)).
        The images of a batch are assigned together, objects padded to the largest count
        (``_padded``); every element is computed as for one image alone (bit-identical)."""
        all_locs, lo, hi, stride = self._location_tables(locs)
        L = len(all_locs)
        x, y = all_locs[:, 0:1], all_locs[:, 1:2]  # (L, 1): locations along dim -2, objects along -1
        rad = stride[:, None] * self.cfg.center_radius
        lo, hi = lo[:, None], hi[:, None]
        objects = []
        for t in targets:
            boxes, labels = t["boxes"].reshape(-1, 4), t["labels"]
            ignore = t.get("ignore")
            if ignore is None:
                ignore = torch.zeros(len(boxes), dtype=torch.bool)
            objects.append((boxes[~ignore], labels[~ignore].long(), boxes[ignore]))
        out_labels = torch.full((len(targets), L), -1, dtype=torch.long)
        out_boxes = torch.zeros((len(targets), L, 4))
        for g in _image_groups([len(o[0]) for o in objects], L):
            part = objects[g]
            lab = out_labels[g]
            pb, valid = _padded([o[0] for o in part])  # (b, G, 4)
            if pb.shape[1]:
                pl, _ = _padded([o[1] for o in part])
                bx1, by1, bx2, by2 = (pb[:, None, :, k] for k in range(4))  # (b, 1, G)
                l_, t_, r_, b_ = x - bx1, y - by1, bx2 - x, by2 - y  # (b, L, G)
                inside = torch.minimum(torch.minimum(l_, t_), torch.minimum(r_, b_)) > 0
                cx = (bx1 + bx2) / 2
                cy = (by1 + by2) / 2
                near = ((x - cx).abs() < rad) & ((y - cy).abs() < rad)
                m = torch.maximum(torch.maximum(l_, t_), torch.maximum(r_, b_))
                ok = inside & near & (m >= lo) & (m <= hi) & valid[:, None]
                best, pos = _smallest_match(ok, (bx2 - bx1) * (by2 - by1))
                lab = torch.where(pos, pl.gather(1, best), lab)
                out_boxes[g] = _assigned(pb, best, pos)
            ig, ig_valid = _padded([o[2] for o in part])
            out_labels[g] = _mark_ignored(lab, ig, ig_valid, x, y)
        return out_labels, out_boxes

    @torch.no_grad()
    def assign_oriented(self, targets: list[dict], locs: list[torch.Tensor]):
        """Rotated-FCOS targets: per image (labels (L,), horizontal ``boxes`` rows (L, 4) of the
        assigned objects, their rotated boxes (L, 5)). A location is a candidate positive of an object
        when it lies inside its rotated box with each side widened to at least the location's stride
        (else a thin object between two grid points, e.g. a 10 x 4 px vehicle at 45 degrees, has no
        positive at all: 18 % of synthetic DOTA's objects without the widening, 7 % for the
        horizontal detector), within ``center_radius`` strides of its centre along both box axes,
        and the largest of its box-frame distances l/t/r/b is in the level's size range; the
        smallest box wins. Objects come as ``polygons`` (G, 8) when the target has them, else as their
        axis-aligned ``boxes`` (angle 0). Ignore objects are ignored by their horizontal boxes."""
        from benchmark.detectors.obb import boxes_to_rbox, poly_to_rbox, to_box_frame

        all_locs, lo, hi, stride = self._location_tables(locs)
        L = len(all_locs)
        x, y = all_locs[:, 0:1], all_locs[:, 1:2]  # (L, 1): locations along dim -2, objects along -1
        half = stride[:, None] / 2
        rad = stride[:, None] * self.cfg.center_radius
        lo, hi = lo[:, None], hi[:, None]
        objects = []
        for t in targets:
            boxes, labels = t["boxes"].reshape(-1, 4).float(), t["labels"]
            ignore = t.get("ignore")
            if ignore is None:
                ignore = torch.zeros(len(boxes), dtype=torch.bool)
            polys = t.get("polygons")
            if polys is not None and len(polys) != len(boxes):
                raise ValueError(f"a target has {len(polys)} polygons for {len(boxes)} boxes")
            # per image, as a whole: the rotated boxes' trigonometry never depends on the batch
            rb_all = poly_to_rbox(polys.reshape(-1, 8).float()) if polys is not None else boxes_to_rbox(boxes)
            keep = ~ignore & (rb_all[:, 2] > 0) & (rb_all[:, 3] > 0)
            objects.append((rb_all[keep], boxes[keep], labels[keep].long(), boxes[ignore]))
        B = len(targets)
        out_labels = torch.full((B, L), -1, dtype=torch.long)
        out_boxes = torch.zeros((B, L, 4))
        out_rb = torch.zeros((B, L, 5))
        for g in _image_groups([len(o[0]) for o in objects], L):
            part = objects[g]
            lab = out_labels[g]
            rb, valid = _padded([o[0] for o in part])  # (b, G, 5)
            if rb.shape[1]:
                pb, _ = _padded([o[1] for o in part])
                pl, _ = _padded([o[2] for o in part])
                u, v = to_box_frame(all_locs[:, None, :], rb[:, None])  # (b, L, G) each
                hw, hh = rb[:, None, :, 2] / 2, rb[:, None, :, 3] / 2  # (b, 1, G)
                # the largest of the box-frame distances l, t, r, b
                m = torch.maximum(torch.maximum(u + hw, v + hh), torch.maximum(hw - u, hh - v))
                inside = (u.abs() < torch.maximum(hw, half)) & (v.abs() < torch.maximum(hh, half))
                near = (u.abs() < rad) & (v.abs() < rad)
                ok = inside & near & (m >= lo) & (m <= hi) & valid[:, None]
                best, pos = _smallest_match(ok, rb[:, None, :, 2] * rb[:, None, :, 3])
                lab = torch.where(pos, pl.gather(1, best), lab)
                out_boxes[g] = _assigned(pb, best, pos)
                out_rb[g] = _assigned(rb, best, pos)
            ig, ig_valid = _padded([o[3] for o in part])
            out_labels[g] = _mark_ignored(lab, ig, ig_valid, x, y)
        return out_labels, out_boxes, out_rb

    def oriented_regression(
        self, out: dict, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """At the locations ``mask`` (B, L) of a ``losses`` call's ``last_outputs`` (oriented model):
        the per-location box loss (ProbIoU + ``angle_loss_weight`` x the angle term), the centre-ness
        targets (computed in the box frame) and the centre-ness logits, each (P,)."""
        from benchmark.detectors.obb import angle_loss, decode, encode, probiou_loss

        B, L = mask.shape
        dev = out["reg"].device
        p_loc = out["locations"].to(dev)[None].expand(B, L, 2)[mask]
        p_rb = out["gt_rbox"][mask]
        pred = decode(p_loc, out["reg"][mask], out["angle"][mask])
        # centre-ness in the box widened as in ``assign_oriented`` (a tiny box's centre scores high)
        strides = torch.tensor(self.cfg.strides, dtype=p_rb.dtype, device=dev)
        s = strides[out["level"].to(dev)][None].expand(B, L)[mask]
        wide = torch.cat([p_rb[:, :2], torch.maximum(p_rb[:, 2:4], s[:, None]), p_rb[:, 4:]], 1)
        ltrb, _ = encode(p_loc, wide)
        ltrb = ltrb.clamp(min=1e-6)
        ctr_t = torch.sqrt(
            (torch.minimum(ltrb[:, 0], ltrb[:, 2]) / torch.maximum(ltrb[:, 0], ltrb[:, 2]))
            * (torch.minimum(ltrb[:, 1], ltrb[:, 3]) / torch.maximum(ltrb[:, 1], ltrb[:, 3]))
        )
        loss = probiou_loss(pred, p_rb) + self.cfg.angle_loss_weight * angle_loss(pred[:, 4], p_rb[:, 4])
        if self.cfg.hull_loss_weight > 0:
            from benchmark.detectors.obb import poly_hull_boxes, rbox_to_poly

            hp, ht = poly_hull_boxes(rbox_to_poly(pred)), poly_hull_boxes(rbox_to_poly(p_rb))
            loss = loss + self.cfg.hull_loss_weight * generalized_box_iou_loss(hp, ht, reduction="none")
        return loss, ctr_t, out["ctr"][mask]

    # ------------------------------------------------------------------------------ interface
    def losses(
        self,
        batch: Batch,
        targets: list[dict],
        weights: torch.Tensor | None = None,
        min_normalizer: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """FCOS losses. ``targets``: per image ``boxes`` (G, 4) xyxy, ``labels`` (G,), optional
        ``ignore`` (G,) bool and optional ``cls_only`` (bool): that image's boxes supervise the
        classification branch only (no box-regression or centre-ness loss: pseudo-labels in
        Unbiased-Teacher-style training). ``weights``: optional loss weights, per image (B,) or per
        location (B, L) in the flattened all-levels order of ``last_outputs["cls"]``.
        ``min_normalizer``: lower bound of the number of positives the classification loss is divided
        by (pseudo-labelled batches with few positives would otherwise weigh their background
        heavily); ``self.last_num_pos`` keeps the (weighted) number of positives of the last call and
        ``self.last_outputs`` its intermediate tensors (graph attached) for methods that add losses on
        them: ``backbone`` and ``fpn`` feature maps, flattened ``cls`` logits (B, L, C), ``ctr``
        logits (B, L), decoded ``reg`` distances (B, L, 4), the assignment ``labels`` (B, L; -1
        background, -2 ignored) and ``gt`` boxes (B, L, 4), ``locations`` (L, 2) and ``level`` (L,).

        Oriented (``cfg.oriented``): targets may carry ``polygons`` (G, 8) (else their boxes are taken
        as axis-aligned); ``reg`` holds the box-frame distances, ``last_outputs`` adds the predicted
        ``angle`` (B, L) and the assigned rotated boxes ``gt_rbox`` (B, L, 5); the box loss is ProbIoU
        plus the angle term (``oriented_regression``)."""
        c_feats, p_feats, cls, reg, ctr, ang = self.raw_all(batch)
        shapes = [tuple(c.shape[-2:]) for c in cls]
        locs = self.locations(shapes, cls[0].device)
        cpu_locs = self.locations(shapes, torch.device("cpu"))
        if self.oriented:
            labels, gt, gt_rb = self.assign_oriented(targets, cpu_locs)
            gt_rb = gt_rb.to(cls[0].device)
        else:
            labels, gt = self.assign(targets, cpu_locs)
        labels, gt = labels.to(cls[0].device), gt.to(cls[0].device)
        cls_f = self._flat(cls)  # (B, L, C)
        reg_f = self._flat(self._decode(reg))  # (B, L, 4)
        ctr_f = self._flat(ctr)[..., 0]  # (B, L)
        B, L, C = cls_f.shape
        if weights is None:
            w_loc = torch.ones((B, L), device=cls_f.device)
        elif weights.ndim == 2:
            w_loc = weights.to(cls_f.device).float()
        else:
            w_loc = weights.to(cls_f.device).float()[:, None].expand(B, L)
        self.last_outputs = {
            "backbone": c_feats,
            "fpn": p_feats,
            "cls": cls_f,
            "ctr": ctr_f,
            "reg": reg_f,
            "labels": labels,
            "gt": gt,
            "locations": torch.cat(locs, 0),
            "level": torch.cat([torch.full((len(l_),), i) for i, l_ in enumerate(locs)]),
        }
        if self.oriented:
            self.last_outputs["angle"] = self._flat(ang)[..., 0]
            self.last_outputs["gt_rbox"] = gt_rb
        valid = labels > -2
        pos = labels >= 0
        onehot = torch.zeros_like(cls_f)
        onehot[pos] = F.one_hot(labels[pos], C).to(cls_f.dtype)
        n_pos = max(1.0, float((pos.float() * w_loc).sum()))
        self.last_num_pos = n_pos
        focal = sigmoid_focal_loss(cls_f, onehot, alpha=0.25, gamma=2.0, reduction="none").sum(2)
        loss_cls = (focal * valid * w_loc).sum() / max(n_pos, min_normalizer)
        cls_only = torch.tensor([bool(t.get("cls_only", False)) for t in targets], device=cls_f.device)
        if cls_only.any():
            pos = pos & ~cls_only[:, None]  # those images' positives get no box / centre-ness loss
            n_pos = max(1.0, float((pos.float() * w_loc).sum()))
        if pos.any() and self.oriented:
            pw = w_loc[pos]
            box_l, ctr_t, ctr_logit = self.oriented_regression(self.last_outputs, pos)
            loss_box = (box_l * ctr_t * pw).sum() / max(1e-6, float((ctr_t * pw).sum()))
            loss_ctr = (
                F.binary_cross_entropy_with_logits(ctr_logit, ctr_t, reduction="none") * pw
            ).sum() / n_pos
        elif pos.any():
            all_locs = torch.cat(locs, 0).to(cls_f.device)[None].expand(B, L, 2)
            p_loc = all_locs[pos]
            p_gt = gt[pos]
            p_reg = reg_f[pos]
            pred_boxes = torch.cat([p_loc - p_reg[:, :2], p_loc + p_reg[:, 2:]], 1)
            lt = p_loc - p_gt[:, :2]
            rb = p_gt[:, 2:] - p_loc
            ltrb = torch.cat([lt, rb], 1).clamp(min=1e-6)
            ctr_t = torch.sqrt(
                (torch.minimum(ltrb[:, 0], ltrb[:, 2]) / torch.maximum(ltrb[:, 0], ltrb[:, 2]))
                * (torch.minimum(ltrb[:, 1], ltrb[:, 3]) / torch.maximum(ltrb[:, 1], ltrb[:, 3]))
            )
            pw = w_loc[pos]
            giou = generalized_box_iou_loss(pred_boxes, p_gt, reduction="none")
            loss_box = (giou * ctr_t * pw).sum() / max(1e-6, float((ctr_t * pw).sum()))
            loss_ctr = (
                F.binary_cross_entropy_with_logits(ctr_f[pos], ctr_t, reduction="none") * pw
            ).sum() / n_pos
        else:
            loss_box = reg_f.sum() * 0.0
            loss_ctr = ctr_f.sum() * 0.0
            if self.oriented:
                loss_box = loss_box + self.last_outputs["angle"].sum() * 0.0
        return {"cls": loss_cls, "box": loss_box, "ctr": loss_ctr}

    def _level_candidates(self, probs, cent, dist, lvl: int, b: int):
        """Image ``b``'s locations on FPN level ``lvl`` whose class probability passes the score
        threshold, the ``pre_nms_topk`` best by score sqrt(p * centerness): ``(scores, location index,
        label, class probabilities (HW, C), distances (HW, 4))``, or None when there is none."""
        p = probs[lvl][b].flatten(1).T  # (HW, C)
        c = cent[lvl][b, 0].flatten()
        d = dist[lvl][b].flatten(1).T
        score = torch.sqrt(p * c[:, None])
        cand = p > self.cfg.score_thresh
        sc = score[cand]
        if sc.numel() == 0:
            return None
        idx = cand.nonzero()
        if sc.numel() > self.cfg.pre_nms_topk:
            sc, top = sc.topk(self.cfg.pre_nms_topk)
            idx = idx[top]
        return sc, idx[:, 0], idx[:, 1], p, d

    @torch.no_grad()
    def predict(self, batch: Batch, dense: bool = False) -> list[Prediction]:
        """Detections per image, in that image's pixel coordinates (padding removed). Oriented:
        ``polygons`` (N, 8) are the rotated boxes' corners (not clipped, as DOTA's ground truth),
        ``boxes`` their enclosing boxes clipped to the image, and NMS is class-wise polygon NMS."""
        _, _, cls, reg, ctr, ang = self.raw_all(batch)
        shapes = [tuple(c.shape[-2:]) for c in cls]
        locs = self.locations(shapes, cls[0].device)
        probs = [torch.sigmoid(c) for c in cls]
        cent = [torch.sigmoid(c) for c in ctr]
        dist = self._decode(reg)
        out = []
        for b, (h, w) in enumerate(batch.sizes):
            if self.oriented:
                pred = self._predict_oriented(probs, cent, dist, ang, locs, b, h, w)
                if dense:
                    pred.dense = self._dense_maps(probs, cent, b, h, w)
                out.append(pred)
                continue
            boxes_l, scores_l, labels_l, probs_l = [], [], [], []
            for lvl in range(len(probs)):
                got = self._level_candidates(probs, cent, dist, lvl, b)
                if got is None:
                    continue
                sc, loc_i, lab, p, d = got
                lc = locs[lvl][loc_i]
                bx = torch.cat([lc - d[loc_i, :2], lc + d[loc_i, 2:]], 1)
                bx[:, 0::2] = bx[:, 0::2].clamp(0, w)
                bx[:, 1::2] = bx[:, 1::2].clamp(0, h)
                boxes_l.append(bx)
                scores_l.append(sc)
                labels_l.append(lab)
                probs_l.append(p[loc_i])
            if boxes_l:
                bx, sc, lab, pr = (torch.cat(v) for v in (boxes_l, scores_l, labels_l, probs_l))
                keep = (bx[:, 2] - bx[:, 0] > 0.5) & (bx[:, 3] - bx[:, 1] > 0.5)
                bx, sc, lab, pr = bx[keep], sc[keep], lab[keep], pr[keep]
                keep = batched_nms(bx, sc, lab, self.cfg.nms_thresh)[: self.cfg.max_detections]
                pred = Prediction(
                    bx[keep].cpu().numpy().astype(np.float32),
                    sc[keep].cpu().numpy().astype(np.float32),
                    lab[keep].cpu().numpy().astype(np.int64),
                    pr[keep].cpu().numpy().astype(np.float32),
                )
            else:
                C = self.num_classes
                pred = Prediction(
                    np.zeros((0, 4), np.float32),
                    np.zeros(0, np.float32),
                    np.zeros(0, np.int64),
                    np.zeros((0, C), np.float32),
                )
            if dense:
                pred.dense = self._dense_maps(probs, cent, b, h, w)
            out.append(pred)
        return out

    def _predict_oriented(self, probs, cent, dist, ang, locs, b: int, h: int, w: int) -> Prediction:
        from benchmark.detectors.obb import decode, normalize_rbox, poly_hull_boxes, polygon_nms, rbox_to_poly

        rb_l, scores_l, labels_l, probs_l = [], [], [], []
        for lvl in range(len(probs)):
            got = self._level_candidates(probs, cent, dist, lvl, b)
            if got is None:
                continue
            sc, loc_i, lab, p, d = got
            a = ang[lvl][b, 0].flatten()
            rb_l.append(normalize_rbox(decode(locs[lvl][loc_i], d[loc_i], a[loc_i])))
            scores_l.append(sc)
            labels_l.append(lab)
            probs_l.append(p[loc_i])
        C = self.num_classes
        if not rb_l:
            return Prediction(
                np.zeros((0, 4), np.float32),
                np.zeros(0, np.float32),
                np.zeros(0, np.int64),
                np.zeros((0, C), np.float32),
                polygons=np.zeros((0, 8), np.float32),
            )
        rb, sc, lab, pr = (torch.cat(v).cpu() for v in (rb_l, scores_l, labels_l, probs_l))
        poly = rbox_to_poly(rb.double())
        bx = poly_hull_boxes(poly)
        bx[:, 0::2] = bx[:, 0::2].clamp(0, w)
        bx[:, 1::2] = bx[:, 1::2].clamp(0, h)
        keep = (bx[:, 2] - bx[:, 0] > 0.5) & (bx[:, 3] - bx[:, 1] > 0.5) & (rb[:, 2] > 0.5) & (rb[:, 3] > 0.5)
        poly, bx, sc, lab, pr = poly[keep], bx[keep], sc[keep], lab[keep], pr[keep]
        # the score-sorted top candidates only: polygon NMS is quadratic
        order = torch.argsort(sc, descending=True, stable=True)[: self.cfg.pre_nms_topk]
        poly_np = poly[order].numpy()
        k = polygon_nms(
            poly_np, sc[order].numpy(), lab[order].numpy(), self.cfg.nms_thresh, self.cfg.max_detections
        )
        k = order[torch.from_numpy(k)]
        return Prediction(
            bx[k].numpy().astype(np.float32),
            sc[k].numpy().astype(np.float32),
            lab[k].numpy().astype(np.int64),
            pr[k].numpy().astype(np.float32),
            polygons=poly[k].numpy().astype(np.float32),
        )

    def _dense_maps(self, probs, cent, b: int, h: int, w: int) -> dict[str, np.ndarray]:
        """Per-location class probabilities of the finest level (C, h/8, w/8) and a foreground map
        (max over levels of max-class probability, upsampled to the finest level)."""
        s0 = self.cfg.strides[0]
        hh, ww = math.ceil(h / s0), math.ceil(w / s0)
        fine = probs[0][b, :, :hh, :ww]
        fg = fine.max(0).values
        for lvl in range(1, len(probs)):
            up = F.interpolate(
                probs[lvl][b : b + 1].max(1, keepdim=True).values,
                size=probs[0].shape[-2:],
                mode="bilinear",
                align_corners=False,
            )[0, 0, :hh, :ww]
            fg = torch.maximum(fg, up)
        return {"class_probs": fine.cpu().numpy(), "foreground": fg.cpu().numpy()}

    @torch.no_grad()
    def embed(self, batch: Batch) -> torch.Tensor:
        """Global-average-pooled deepest backbone features, masked to each image's true size."""
        c, _ = self.features(batch.images)
        deep = c[-1]
        s = self.cfg.strides[-1]
        out = []
        for b, (h, w) in enumerate(batch.sizes):
            hh, ww = max(1, math.ceil(h / s)), max(1, math.ceil(w / s))
            out.append(deep[b, :, :hh, :ww].mean((1, 2)))
        return torch.stack(out)

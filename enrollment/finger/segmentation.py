"""Foreground segmentation and per-block ridge measurements at 500 dpi.

A block is *foreground* when it has contrast (grey-level spread) and *ridge-like* when its
spectrum concentrates in the ridge band (periods of 5–15 px at 500 dpi) with one dominant
orientation.  The two are kept apart on purpose: a face photo has plenty of contrast but
few ridge-like blocks, a blank image has neither, and the quality score uses both.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_MARGIN = 24  # px kept around the foreground when LEADER runs on it, so minutiae at its edge see context
BLOCK = 16
WINDOW = 32  # FFT window centred on each block: two ridge periods either way
MIN_STD = 8.0  # grey levels; below this a block is flat background (for a print of normal contrast)
MIN_STD_FLOOR = 3.0  # grey levels; never foreground below this (sensor noise)
RELATIVE_STD = 0.3  # of the image's 95th-percentile block contrast: a faint print gets a lower bar
RIDGE_BAND = (1 / 15, 1 / 5)  # cycles per pixel at 500 dpi
MIN_BAND_RATIO = 0.45
MIN_COHERENCE = 0.35


@dataclass(frozen=True)
class BlockMap:
    """Per-block measurements; ``mask`` is the pixel-level foreground (eroded, holes filled)."""

    foreground: np.ndarray  # bool [BH, BW], contrast ≥ MIN_STD
    ridge_like: np.ndarray  # bool [BH, BW], may include faint blocks below MIN_STD
    coherence: np.ndarray  # float32 [BH, BW], 0–1
    band_ratio: np.ndarray  # float32 [BH, BW], 0–1
    contrast: np.ndarray  # float32 [BH, BW], grey-level std
    mask: np.ndarray  # bool [H, W]
    print_mask: np.ndarray  # bool [H, W]: where the finger touched (see ``_print_mask``); minutiae are kept here


def analyse(gray: np.ndarray) -> BlockMap:
    """Block map of a 500-dpi ``uint8`` image."""
    image = gray.astype(np.float32)
    h, w = image.shape
    bh, bw = -(-h // BLOCK), -(-w // BLOCK)
    pad = (WINDOW - BLOCK) // 2
    padded = cv2.copyMakeBorder(image, pad, bh * BLOCK - h + pad, pad, bw * BLOCK - w + pad, cv2.BORDER_REFLECT)

    gx = cv2.Sobel(padded, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(padded, cv2.CV_32F, 0, 1, ksize=3)
    windows = _windows(padded, bh, bw)  # [BH, BW, WINDOW, WINDOW]
    contrast = windows[:, :, pad : pad + BLOCK, pad : pad + BLOCK].std(axis=(2, 3)).astype(np.float32)

    gxx, gyy, gxy = (_windows(a, bh, bw).sum(axis=(2, 3)) for a in (gx * gx, gy * gy, gx * gy))
    coherence = (np.sqrt((gxx - gyy) ** 2 + 4 * gxy**2) / np.maximum(gxx + gyy, 1e-6)).astype(np.float32)

    hann = np.outer(np.hanning(WINDOW), np.hanning(WINDOW)).astype(np.float32)
    centred = (windows - windows.mean(axis=(2, 3), keepdims=True)) * hann
    power = np.abs(np.fft.rfft2(centred)) ** 2
    fy = np.fft.fftfreq(WINDOW)[:, None]
    fx = np.fft.rfftfreq(WINDOW)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    band = (radius >= RIDGE_BAND[0]) & (radius <= RIDGE_BAND[1])
    total = power[:, :, radius > 0].sum(axis=2)
    band_ratio = (power[:, :, band].sum(axis=2) / np.maximum(total, 1e-6)).astype(np.float32)

    # Faint (dry, low-pressure) prints have ridges of a few grey levels only: the contrast bar
    # follows the print's own contrast, between MIN_STD_FLOOR and MIN_STD.
    # ``foreground`` keeps the fixed bar: the gates and the quality score compare against it.
    foreground = contrast >= MIN_STD
    textured = contrast >= float(np.clip(RELATIVE_STD * np.percentile(contrast, 95), MIN_STD_FLOOR, MIN_STD))
    ridge_like = textured & (band_ratio >= MIN_BAND_RATIO) & (coherence >= MIN_COHERENCE)
    mask = _pixel_mask(ridge_like, h, w)
    print_mask = _print_mask(textured, ridge_like, h, w)
    return BlockMap(foreground, ridge_like, coherence, band_ratio, contrast, mask, print_mask)


def _print_mask(foreground: np.ndarray, ridge_like: np.ndarray, h: int, w: int) -> np.ndarray:
    """The finger's contact region: contrasted blocks connected to the ridge-like ones.

    ``mask`` (ridge-like blocks only) leaves out dry, dotted or faint ridges whose spectrum is not
    clean, though LEADER finds good minutiae there; cropping to it and dropping minutiae outside
    it cost whole regions of such prints.  Contrasted blocks that connect to the ridge-like
    region are the finger.
    """
    b = foreground.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    b = cv2.morphologyEx(b, cv2.MORPH_OPEN, kernel)  # isolated noisy blocks are not finger
    b |= ridge_like.astype(np.uint8)
    b = cv2.morphologyEx(b, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(b, connectivity=8)
    if count > 1:
        ridge_area = np.bincount(labels[ridge_like].ravel(), minlength=count)[1:]
        largest = 1 + int(np.argmax(ridge_area if ridge_area.any() else stats[1:, cv2.CC_STAT_AREA]))
        b = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(b, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(b)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    mask = cv2.resize(filled, (filled.shape[1] * BLOCK, filled.shape[0] * BLOCK), interpolation=cv2.INTER_NEAREST)[:h, :w]
    return mask.astype(bool)


def _windows(padded: np.ndarray, bh: int, bw: int) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(padded, (WINDOW, WINDOW))
    return view[: bh * BLOCK : BLOCK, : bw * BLOCK : BLOCK]


def _pixel_mask(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    """Close gaps between ridge-like blocks, keep the largest region, fill its holes."""
    b = blocks.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    b = cv2.morphologyEx(b, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(b, connectivity=8)
    if count > 1:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        b = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(b, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(b)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    mask = cv2.resize(filled, (filled.shape[1] * BLOCK, filled.shape[0] * BLOCK), interpolation=cv2.INTER_NEAREST)
    return mask[:h, :w].astype(bool)

"""Synthetic street scenes with exact ground-truth flow, in pure numpy.

A clip is a street seen from a car: road, sidewalks, buildings, terrain, trees, poles and signs
under a sky, with cars and pedestrians on top, all drawn with Cityscapes train ids. Every class
has its own randomised procedural texture (filtered noise at two scales plus a class pattern:
lane marks, paving, windows, clouds, car windows and wheels, clothes), so there is real
high-frequency detail to predict and to warp.

Why it is exact: the scene is a stack of layers (sky, static scene, then cars and people in depth
order). Each layer moves by an isotropic scale plus a translation per frame (camera zoom about the
vanishing point for forward motion or a horizontal shift for a pan, composed with the object's
own motion). Frame t is rendered *backwards*: each pixel p is mapped into every layer's frame-0
coordinates, the topmost layer that covers it wins, and its texture is sampled at that source
position s. Hence ``flow[t-1](p) = p - s`` exactly (in the model's normalised units), which is
what the project's backward warp needs: ``video[t](p) = video[0](p - flow[t-1](p))``.
``valid`` is false where frame t shows something that frame 0 did not: the source falls outside
frame 0, or one of the four bilinear taps around it belongs to another layer in frame 0
(disocclusions, and a one-pixel safety band along occlusion edges).

Motion follows semantics: the camera moves the background; cars drive (across the street or
towards the camera) several times faster than people walk on the sidewalk; nearer objects
occlude farther ones.
"""

import os

import numpy as np

# Cityscapes train ids drawn by the generator.
ROAD, SIDEWALK, BUILDING, POLE, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY = 0, 1, 2, 5, 7, 8, 9, 10
PERSON, CAR = 11, 13

_NOISE_SIZE = 64  # Side of the periodic noise tiles (texels).


def _smoothstep(edge0, edge1, x):
  """Smooth 0 -> 1 ramp, used to give patterns soft (about one pixel wide) edges."""
  t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def _noise_tile(rng, sigma):
  """A periodic tile of Gaussian-filtered white noise with unit std (band-limited detail).

  Returned flattened with one wrapped extra row and column, so that `_sample_tile` can read the
  four bilinear taps at index, index + 1, index + n + 1 and index + n + 2 without wrapping.
  """
  white = rng.standard_normal((_NOISE_SIZE, _NOISE_SIZE))
  f = np.fft.fftfreq(_NOISE_SIZE)
  gain = np.exp(-2.0 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
  tile = np.real(np.fft.ifft2(np.fft.fft2(white) * gain))
  tile = (tile - tile.mean()) / (tile.std() + 1e-8)
  return np.pad(tile, ((0, 1), (0, 1)), mode='wrap').astype(np.float32).ravel()


def _sample_tile(tile, x, y):
  """Bilinear, wrapping lookup of a `_noise_tile` at continuous texel positions (x, y)."""
  stride = _NOISE_SIZE + 1
  x0 = np.floor(x)
  y0 = np.floor(y)
  fx = (x - x0).astype(np.float32)
  fy = (y - y0).astype(np.float32)
  index = (y0.astype(np.int32) & (_NOISE_SIZE - 1)) * stride + (
      x0.astype(np.int32) & (_NOISE_SIZE - 1))
  top = tile[index] + fx * (tile[index + 1] - tile[index])
  bottom = tile[index + stride] + fx * (tile[index + stride + 1] - tile[index + stride])
  return top + fy * (bottom - top)


class _Texture:
  """A class texture: base colour modulated by noise at a fine and a coarse scale."""

  def __init__(self, rng, tiles, color, fine_amp, coarse_amp, fine_scale=(0.8, 1.0)):
    self.tiles = tiles
    self.color = np.asarray(color, np.float32)
    self.fine_amp = fine_amp
    self.coarse_amp = coarse_amp
    self.fine_scale = rng.uniform(*fine_scale)
    self.coarse_scale = rng.uniform(0.08, 0.16)
    self.offset = [float(o) for o in rng.uniform(0, _NOISE_SIZE, size=4)]
    self.tint = rng.uniform(-0.04, 0.04, size=3).astype(np.float32)

  def __call__(self, x, y):
    """Returns (N, 3) colours at layer coordinates x, y (N,)."""
    fine = _sample_tile(self.tiles[0], x * self.fine_scale + self.offset[0],
                        y * self.fine_scale + self.offset[1])
    coarse = _sample_tile(self.tiles[1], x * self.coarse_scale + self.offset[2],
                          y * self.coarse_scale + self.offset[3])
    shade = 1.0 + self.fine_amp * fine + self.coarse_amp * coarse
    return (self.color + self.tint)[None, :] * shade[:, None]


def _jitter(rng, color, amount=0.08):
  """A randomised version of a reference colour."""
  return np.clip(np.asarray(color) + rng.uniform(-amount, amount, size=3), 0.02, 0.98)


def _gray(rng, low, high):
  """A random grey with a faint warm or cold cast."""
  return np.clip(rng.uniform(low, high) + rng.uniform(-0.015, 0.015, size=3), 0.0, 1.0)


class _Layer:
  """A layer: frame-0 layer coordinates s map to frame-t pixels by p = a_t * s + b_t."""

  def __init__(self, a, b, box=None):
    self.a = np.asarray(a, np.float64)  # (T,)
    self.b = np.asarray(b, np.float64)  # (T, 2)
    self.box = box  # (x0, y0, x1, y1) in layer coordinates, or None for unbounded layers.

  def image_box(self, t, height, width):
    """Pixel slices (rows, cols) that can show this layer in frame t."""
    if self.box is None:
      return slice(0, height), slice(0, width)
    x0, y0, x1, y1 = self.box
    a, (bx, by) = self.a[t], self.b[t]
    c0 = max(int(np.floor(a * x0 + bx)), 0)
    c1 = min(int(np.ceil(a * x1 + bx)) + 1, width)
    r0 = max(int(np.floor(a * y0 + by)), 0)
    r1 = min(int(np.ceil(a * y1 + by)) + 1, height)
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


class _Sky(_Layer):
  """Sky: vertical gradient with soft clouds; at infinity, so only a pan moves it."""

  def __init__(self, rng, tiles, a, b, horizon):
    super().__init__(a, b)
    self.horizon = horizon
    self.top = np.array(_jitter(rng, (0.35, 0.55, 0.85), 0.1), np.float32)
    self.bottom = np.array(_jitter(rng, (0.75, 0.82, 0.9), 0.06), np.float32)
    self.clouds = _Texture(rng, tiles, (1.0, 1.0, 1.0), 0.01, 0.25)
    self.cloud_amount = rng.uniform(0.2, 0.6)

  def sample(self, x, y):
    return np.full(x.shape, SKY, np.int32)

  def shade(self, labels, x, y):
    g = np.clip(1.0 - y / max(self.horizon, 1.0), 0.0, 1.0)[:, None]
    base = self.bottom * (1 - g) + self.top * g
    cloud = np.clip(self.clouds(x, y)[:, :1] - 1.0, 0.0, 1.0) * self.cloud_amount * 3.0
    return base + (1.0 - base) * np.clip(cloud, 0.0, 1.0)


class _Scene(_Layer):
  """The static street: ground (road, sidewalk, terrain), facades, and props (trees, poles)."""

  def __init__(self, rng, tiles, a, b, height, width):
    super().__init__(a, b)
    self.h, self.w = height, width
    self.yh = height * rng.uniform(0.35, 0.48)  # Horizon row.
    self.xv = width * rng.uniform(0.35, 0.65)  # Vanishing point column.
    aspect = width / height
    self.kr = rng.uniform(0.45, 0.75) * aspect  # Road half width per row below the horizon.
    self.ks = self.kr * rng.uniform(1.35, 1.8)  # Outer edge of the sidewalk.
    self.kt = self.ks * rng.uniform(1.1, 1.3) if rng.uniform() < 0.5 else self.ks
    # Facade blocks along x (wide range so that a pan brings in new buildings).
    edges = [-1.5 * width]
    while edges[-1] < 2.5 * width:
      edges.append(edges[-1] + width * rng.uniform(0.08, 0.3))
    self.block_edges = np.array(edges)
    n = len(edges) + 1
    self.block_slope = rng.uniform(0.25, 0.9, size=n)
    self.block_rise = rng.uniform(0.0, 0.08, size=n) * height
    self.block_colors = np.stack([_jitter(rng, c, 0.06) for c in rng.choice(
        np.array([(0.62, 0.55, 0.45), (0.5, 0.5, 0.52), (0.6, 0.4, 0.32), (0.75, 0.72, 0.65),
                  (0.4, 0.38, 0.36)]), size=n)]).astype(np.float32)
    # Patterns no finer than ~4 px, so that small frames do not alias them.
    self.window_period = np.maximum(rng.uniform(0.035, 0.06, size=(n, 2)) * height,
                                    4.0).astype(np.float32)
    self.window_offset = rng.uniform(0, 1, size=(n, 2)).astype(np.float32)
    self.lane_dash = rng.uniform(0.8, 1.6) * height
    self.lane_phase = rng.uniform(0, 1)
    self.paving = max(rng.uniform(0.035, 0.06) * height, 4.0)
    self.tex = {
        ROAD: _Texture(rng, tiles, _gray(rng, 0.25, 0.42), 0.1, 0.08),
        SIDEWALK: _Texture(rng, tiles, _jitter(rng, (0.62, 0.58, 0.56), 0.04), 0.08, 0.06),
        BUILDING: _Texture(rng, tiles, (1.0, 1.0, 1.0), 0.07, 0.06),
        VEGETATION: _Texture(rng, tiles, _jitter(rng, (0.22, 0.42, 0.16), 0.06), 0.3, 0.15),
        TERRAIN: _Texture(rng, tiles, _jitter(rng, (0.45, 0.5, 0.25), 0.06), 0.2, 0.1),
        POLE: _Texture(rng, tiles, _jitter(rng, (0.5, 0.5, 0.5), 0.1), 0.05, 0.05),
        TRAFFIC_SIGN: _Texture(rng, tiles, _jitter(rng, (0.85, 0.7, 0.1), 0.1), 0.04, 0.03),
    }
    self.props = self._make_props(rng)

  def _make_props(self, rng):
    """Trees, poles and signs standing on the outer sidewalk edges, farthest first."""
    props = []
    ground = self.h - self.yh
    for _ in range(rng.integers(3, 9)):
      dy = ground * rng.uniform(0.08, 1.2)
      side = rng.choice([-1.0, 1.0])
      x = self.xv + side * self.ks * dy * rng.uniform(0.92, 1.0)
      if rng.uniform() < 0.6:
        radius = dy * rng.uniform(0.35, 0.6)
        crown_y = self.yh + dy - dy * rng.uniform(1.1, 1.5)
        trunk = max(0.05 * dy, 0.8)
        props.append(('tree', dy, (x, crown_y, radius, trunk, self.yh + dy)))
      else:
        half = max(0.025 * dy, 0.8)
        top = self.yh + dy - dy * rng.uniform(1.2, 1.8)
        sign = max(0.07 * dy, 1.5)
        props.append(('pole', dy, (x, top, half, sign, self.yh + dy)))
    props.sort(key=lambda p: p[1])
    return props

  def sample(self, x, y):
    """Labels on a pixel grid mapped to layer coordinates (x varies by column, y by row)."""
    xc, yr = x[0], y[:, 0]
    dx = np.abs(xc - self.xv)[None, :]
    dy = (yr - self.yh)[:, None]
    block = np.searchsorted(self.block_edges, xc)
    roof = self.yh - dx[0] * self.block_slope[block] * 0.35 - self.block_rise[block]
    labels = np.where(yr[:, None] >= roof[None, :], BUILDING, -1).astype(np.int32)
    ratio = dx / np.maximum(dy, 1e-6)
    ground = np.where(ratio < self.kr, ROAD, np.where(
        ratio < self.ks, SIDEWALK, np.where(ratio < self.kt, TERRAIN, -1)))
    labels = np.where((dy > 0) & (ground >= 0), ground, labels).astype(np.int32)
    for kind, _, p in self.props:
      if kind == 'tree':
        cx, cy, r, trunk, foot = p
        box = (cx - r, cy - r, cx + r, foot)
      else:
        cx, top, half, sign, foot = p
        box = (cx - sign, top - sign, cx + sign, foot)
      c0, c1 = np.searchsorted(xc, [box[0], box[2]])
      r0, r1 = np.searchsorted(yr, [box[1], box[3]])
      if c0 >= c1 or r0 >= r1:
        continue
      bx, by = xc[None, c0:c1], yr[r0:r1, None]
      view = labels[r0:r1, c0:c1]
      if kind == 'tree':
        crown = (bx - cx) ** 2 + (by - cy) ** 2 < r * r
        stem = (np.abs(bx - cx) < trunk) & (by > cy) & (by < foot)
        view[crown | stem] = VEGETATION
      else:
        view[(np.abs(bx - cx) < half) & (by > top) & (by < foot)] = POLE
        view[(np.abs(bx - cx) < sign) & (by > top - sign) & (by < top + sign)] = TRAFFIC_SIGN
    return labels  # -1 where the sky layer shows through.

  def shade(self, labels, x, y):
    rgb = np.empty(labels.shape + (3,), np.float32)
    for cls, tex in self.tex.items():
      m = labels == cls
      if not m.any():
        continue
      xs, ys = x[m], y[m]
      col = tex(xs, ys)
      dy = np.maximum(ys - self.yh, 1e-3)
      if cls == ROAD:
        # Dashed centre line, in perspective (dashes get shorter towards the horizon).
        dist = np.abs(xs - self.xv) - 0.012 * self.kr * dy
        phase = (self.lane_dash / dy + self.lane_phase) % 1.0
        mark = (1 - _smoothstep(-0.5, 0.7, dist)) * (phase < 0.5)
        col = col * (1 - mark[:, None]) + 0.85 * mark[:, None]
      elif cls == SIDEWALK:
        gx = np.abs(((xs / self.paving) % 1.0) - 0.5)
        gy = np.abs(((ys / self.paving) % 1.0) - 0.5)
        joint = _smoothstep(0.36, 0.5, np.maximum(gx, gy))
        col = col * (1 - 0.25 * joint[:, None])
      elif cls == BUILDING:
        block = np.searchsorted(self.block_edges, xs)
        period = self.window_period[block]
        wx = ((xs / period[:, 0] + self.window_offset[block, 0]) % 1.0) - 0.5
        wy = ((ys / period[:, 1] + self.window_offset[block, 1]) % 1.0) - 0.5
        window = (1 - _smoothstep(0.22, 0.3, np.abs(wx))) * (1 - _smoothstep(0.18, 0.26,
                                                                          np.abs(wy)))
        base = self.block_colors[block]
        glass = np.array([0.2, 0.25, 0.32], np.float32)
        col = col * (base * (1 - window[:, None]) + glass * window[:, None])
      rgb[m] = col
    return rgb


class _Car(_Layer):
  """A car seen from the side (crossing) or from the front (oncoming)."""

  def __init__(self, rng, tiles, a, b, anchor, height, length):
    self.qx, self.qy = float(anchor[0]), float(anchor[1])
    self.hc, self.len = height, length
    super().__init__(a, b, (self.qx - length / 2, self.qy - height, self.qx + length / 2,
                            self.qy))
    palette = np.array([(0.7, 0.1, 0.1), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85), (0.1, 0.1, 0.1),
                        (0.55, 0.57, 0.6), (0.2, 0.45, 0.25), (0.8, 0.6, 0.1)])
    self.body = _Texture(rng, tiles, _jitter(rng, palette[rng.integers(len(palette))], 0.05),
                         0.04, 0.05)
    self.glass = _Texture(rng, tiles, _jitter(rng, (0.15, 0.2, 0.28), 0.04), 0.08, 0.1)
    self.tyre = _Texture(rng, tiles, (0.08, 0.08, 0.08), 0.1, 0.05)
    self.cabin_shift = rng.uniform(-0.08, 0.08) * (length > 1.8 * height)

  def _parts(self, x, y):
    """Body, window and wheel masks at layer coordinates."""
    u = (x - self.qx) / self.len  # -0.5 .. 0.5 along the car
    v = (self.qy - y) / self.hc  # 0 (ground) .. 1 (roof)
    body = (np.abs(2 * u) ** 6 + np.abs((v - 0.35) / 0.23) ** 6) < 1
    half = 0.36 - 0.16 * (v - 0.55) / 0.45
    cab_u = np.abs(u - self.cabin_shift)
    cabin = (v >= 0.5) & (v < 1.0) & (cab_u < half)
    window = cabin & (v > 0.6) & (v < 0.92) & (cab_u < half - 0.05)
    r = 0.17 * self.hc
    wx = 0.3 * self.len
    wheel = ((np.abs(x - self.qx) - wx) ** 2 + (y - (self.qy - r)) ** 2) < r * r
    return body | cabin, window, wheel

  def sample(self, x, y):
    shape, _, wheel = self._parts(x, y)
    return np.where(shape | wheel, CAR, -1).astype(np.int32)

  def shade(self, labels, x, y):
    _, window, wheel = self._parts(x, y)
    lx, ly = x - self.qx, y - self.qy  # The texture moves with the car.
    v = ((self.qy - y) / self.hc)[:, None]
    col = self.body(lx, ly) * (0.8 + 0.35 * v)
    col = np.where(window[:, None], self.glass(lx, ly), col)
    return np.where(wheel[:, None], self.tyre(lx, ly), col)


class _Person(_Layer):
  """A pedestrian: head, torso and legs, each with its own colour."""

  def __init__(self, rng, tiles, a, b, anchor, height):
    self.qx, self.qy = float(anchor[0]), float(anchor[1])
    self.hp = height
    half = 0.2 * height
    super().__init__(a, b, (self.qx - half, self.qy - height, self.qx + half, self.qy))
    self.skin = _Texture(rng, tiles, _jitter(rng, (0.8, 0.62, 0.5), 0.12), 0.03, 0.03)
    self.shirt = _Texture(rng, tiles, rng.uniform(0.1, 0.9, size=3), 0.08, 0.08)
    self.pants = _Texture(rng, tiles, rng.uniform(0.05, 0.5, size=3), 0.08, 0.06)
    self.stride = rng.uniform(0.02, 0.08)

  def _parts(self, x, y):
    dx = (x - self.qx) / self.hp
    v = (self.qy - y) / self.hp
    head = dx ** 2 + (v - 0.9) ** 2 < 0.085 ** 2
    torso = (v > 0.45) & (v <= 0.81) & (np.abs(dx) < 0.15 - 0.05 * (v > 0.76))
    legs = (v >= 0) & (v <= 0.46) & (np.abs(np.abs(dx) - self.stride - 0.02) < 0.045)
    return head, torso, legs

  def sample(self, x, y):
    head, torso, legs = self._parts(x, y)
    return np.where(head | torso | legs, PERSON, -1).astype(np.int32)

  def shade(self, labels, x, y):
    head, torso, _ = self._parts(x, y)
    lx, ly = x - self.qx, y - self.qy
    col = np.where(torso[:, None], self.shirt(lx, ly), self.pants(lx, ly))
    return np.where(head[:, None], self.skin(lx, ly), col)


def _camera(rng, num_frames, width, center):
  """Per-frame camera map C_t(x) = z_t * x + d_t for the static scene, and the sky's shift."""
  t = np.arange(num_frames, dtype=np.float64)
  if rng.uniform() < 0.5:  # Forward motion: zoom about the vanishing point.
    zoom = (1.0 + rng.uniform(0.015, 0.04)) ** t
    shift = np.zeros((num_frames, 2))
  else:  # Pan: everything, the sky included, shifts sideways.
    zoom = np.ones(num_frames)
    shift = np.stack([rng.choice([-1.0, 1.0]) * rng.uniform(0.004, 0.012) * width * t,
                      np.zeros(num_frames)], axis=1)
  d = center[None, :] * (1.0 - zoom[:, None]) + shift
  return zoom, d, shift


def _objects(rng, tiles, scene, zoom, d, num_frames, height, width):
  """Cars on the road and people on the sidewalks, with their per-frame maps."""
  t = np.arange(num_frames, dtype=np.float64)
  center = np.array([scene.xv, scene.yh])
  ground = height - scene.yh
  objects = []
  for _ in range(rng.integers(1, 4)):
    dy = ground * rng.uniform(0.3, 1.05)
    qy = scene.yh + dy
    qx = np.clip(scene.xv + rng.uniform(-0.8, 0.8) * scene.kr * dy, 0.05 * width, 0.95 * width)
    hc = max(0.42 * dy, 3.0)
    if rng.uniform() < 0.6:  # Crossing traffic: 10 to 20 % of a car length per frame.
      length = 2.3 * hc
      v = rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.2) * length
      ga, gb = np.ones(num_frames), np.stack([v * t, np.zeros(num_frames)], axis=1)
    else:  # Oncoming: moves towards the camera along the road, growing as it comes.
      length = 1.4 * hc
      ga = (1.0 + rng.uniform(0.05, 0.09)) ** t
      gb = center[None, :] * (1.0 - ga[:, None])
    a = zoom * ga
    b = zoom[:, None] * gb + d
    objects.append(_Car(rng, tiles, a, b, (qx, qy), hc, length))
  for _ in range(rng.integers(1, 5)):
    dy = ground * rng.uniform(0.25, 1.0)
    qy = scene.yh + dy
    side = rng.choice([-1.0, 1.0])
    qx = scene.xv + side * rng.uniform(scene.kr, scene.ks) * dy
    if not 0.03 * width < qx < 0.97 * width:
      qx = scene.xv - side * rng.uniform(scene.kr, scene.ks) * dy
    qx = float(np.clip(qx, 0.03 * width, 0.97 * width))
    hp = max(0.5 * dy, 3.0)
    v = rng.choice([-1.0, 1.0]) * rng.uniform(0.02, 0.06) * hp  # Walking pace.
    gb = np.stack([v * t, np.zeros(num_frames)], axis=1)
    objects.append(_Person(rng, tiles, zoom, zoom[:, None] * gb + d, (qx, qy), hp))
  return objects


def _render(layers, t, xs, ys):
  """Backward-maps frame t: returns top layer index, source x, y, label and colour per pixel.

  Layers are visited back to front (sky, scene, then objects by how low their feet are in
  frame t); each one is only evaluated inside the image box it can cover.
  """
  height, width = xs.shape
  inv_a = np.array([1.0 / layer.a[t] for layer in layers], np.float32)
  off = np.array([layer.b[t] / layer.a[t] for layer in layers], np.float32)
  top = np.zeros((height, width), np.int32)  # The sky (layer 0) covers everything.
  labels = np.full((height, width), SKY, np.int32)
  order = [1] + sorted(range(2, len(layers)),
                       key=lambda i: layers[i].a[t] * layers[i].qy + layers[i].b[t, 1])
  for i in order:
    rows, cols = layers[i].image_box(t, height, width)
    if rows.start >= rows.stop or cols.start >= cols.stop:
      continue
    lab = layers[i].sample(xs[rows, cols] * inv_a[i] - off[i, 0],
                           ys[rows, cols] * inv_a[i] - off[i, 1])
    hit = lab >= 0
    top[rows, cols][hit] = i
    labels[rows, cols][hit] = lab[hit]
  src_x = xs * inv_a[top] - off[top, 0]
  src_y = ys * inv_a[top] - off[top, 1]
  flat = top.ravel()
  rgb = np.empty((height * width, 3), np.float32)
  for i in np.flatnonzero(np.bincount(flat, minlength=len(layers))):
    idx = np.flatnonzero(flat == i)
    rgb[idx] = layers[i].shade(labels.ravel()[idx], src_x.ravel()[idx], src_y.ravel()[idx])
  return top, src_x, src_y, labels, rgb.reshape(height, width, 3)


def _valid(top0, top_t, src_x, src_y):
  """True where the source is inside frame 0 and all its bilinear taps show the same layer."""
  height, width = top0.shape
  inside = (src_x >= 0) & (src_x <= width - 1) & (src_y >= 0) & (src_y <= height - 1)
  x0 = np.clip(np.floor(src_x), 0, width - 1).astype(np.int64)
  y0 = np.clip(np.floor(src_y), 0, height - 1).astype(np.int64)
  x1 = np.clip(np.ceil(src_x), 0, width - 1).astype(np.int64)
  y1 = np.clip(np.ceil(src_y), 0, height - 1).astype(np.int64)
  same = np.ones_like(inside)
  for yy, xx in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
    same &= top0[yy, xx] == top_t
  return inside & same


def make_clip(seed, height=128, width=256, num_frames=5):
  """Renders one synthetic street clip with exact flow, deterministically from `seed`.

  Args:
    seed: an int >= 0, or a sequence of them (e.g. (base_seed, clip_index)); the same seed
      always gives the same clip.
    height, width: frame size in pixels (at least 16 x 16).
    num_frames: T >= 1.

  Returns:
    dict with
      video: uint8 (T, H, W, 3);
      labels: int32 (T, H, W) Cityscapes train ids per frame;
      flow: float32 (T-1, H, W, 2), x first, normalised units (2 / (W-1) in x is one pixel):
        video[t](p) = video[0](p - flow[t-1](p)) wherever valid[t-1](p);
      valid: bool (T-1, H, W), false where frame t shows content frame 0 did not.
  """
  if height < 16 or width < 16:
    raise ValueError(f'make_clip: frame size {height}x{width} is too small; need at least 16x16')
  if num_frames < 1:
    raise ValueError(f'make_clip: num_frames={num_frames}; need at least 1')
  rng = np.random.default_rng(seed)
  tiles = (_noise_tile(rng, 0.8), _noise_tile(rng, 1.5))
  ones = np.ones(num_frames)
  scene = _Scene(rng, tiles, ones, np.zeros((num_frames, 2)), height, width)
  zoom, d, shift = _camera(rng, num_frames, width, np.array([scene.xv, scene.yh]))
  scene.a, scene.b = zoom, d
  sky = _Sky(rng, tiles, ones, shift, scene.yh)
  layers = [sky, scene] + _objects(rng, tiles, scene, zoom, d, num_frames, height, width)

  video = np.empty((num_frames, height, width, 3), np.uint8)
  labels = np.empty((num_frames, height, width), np.int32)
  flow = np.empty((max(num_frames - 1, 0), height, width, 2), np.float32)
  valid = np.empty((max(num_frames - 1, 0), height, width), bool)
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
  scale = np.array([2.0 / (width - 1), 2.0 / (height - 1)], np.float32)
  top0 = None
  for t in range(num_frames):
    top, src_x, src_y, labels[t], rgb = _render(layers, t, xs, ys)
    video[t] = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    if t == 0:
      top0 = top
      continue
    flow[t - 1, ..., 0] = (xs - src_x) * scale[0]
    flow[t - 1, ..., 1] = (ys - src_y) * scale[1]
    valid[t - 1] = _valid(top0, top, src_x, src_y)
  return {'video': video, 'labels': labels, 'flow': flow, 'valid': valid}


def write_example_inputs(output_dir, seed=1_000_000, height=64, width=64):
  """Writes `label_map.png` (train ids) and `first_frame.png` of clip `seed` for --mode=generate.

  The default seed lies outside the training and evaluation streams, so the demo generates
  from a scene the model has never seen.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(output_dir, exist_ok=True)
  clip = make_clip(seed, height, width, 2)
  Image.fromarray(clip['labels'][0].astype(np.uint8)).save(
      os.path.join(output_dir, 'label_map.png'))
  Image.fromarray(clip['video'][0]).save(os.path.join(output_dir, 'first_frame.png'))
  return os.path.join(output_dir, 'label_map.png'), os.path.join(output_dir, 'first_frame.png')


if __name__ == '__main__':
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description='Write a synthetic label map and first frame.')
  parser.add_argument('--output_dir', required=True)
  parser.add_argument('--seed', type=int, default=1_000_000)
  parser.add_argument('--height', type=int, default=64)
  parser.add_argument('--width', type=int, default=64)
  args = parser.parse_args()
  for path in write_example_inputs(args.output_dir, args.seed, args.height, args.width):
    print(path)

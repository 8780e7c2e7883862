"""Offscreen MuJoCo rendering: one reusable renderer per env, shadows and multisampling off.

Why not `mujoco.Renderer`: its `close()` (also run by `__del__`) destroys its GL context *before* freeing its
`MjrContext`, so the GL object ids are deleted in whichever context is current at that moment, which is
another renderer's. Under OSMesa that renderer then draws garbage (architecture.md §Rendering records it
as "a second renderer renders garbage"). This class makes its own context current before freeing anything, so
envs with their own renderer can live side by side in one process and be closed in any order.
"""

from __future__ import annotations

import contextlib
import os

# MuJoCo picks its GL backend once, when `mujoco` is first imported, and its default (GLFW) needs a display.
# Default to software OSMesa so headless machines render; a user's MUJOCO_GL (e.g. egl) wins. This must run
# before the first `import mujoco` in the process, which is why the env modules import this one at the top
# and the simulators (which import mujoco) only later, inside functions.
os.environ.setdefault("MUJOCO_GL", "osmesa")

import mujoco  # after the MUJOCO_GL default, see above
import numpy as np

# Scene flags switched off for speed. Shadows dominate software rendering (architecture.md §Rendering:
# ~120 ms -> ~20 ms a frame); reflections cost another ~20% here and are invisible at 64 px.
_FLAGS_OFF = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION)


class OffscreenRenderer:
    """Renders RGB images of one model from its named cameras into a fixed-size offscreen buffer.

    Create one per env and reuse it for every camera and frame; call `close()` when done.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        width: int,
        height: int,
        multisample: bool = False,
        hidden_geom_groups: tuple[int, ...] = (),
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self._model = model
        self.width, self.height = int(width), int(height)
        # The offscreen framebuffer is allocated at MjrContext creation with the model's size settings.
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), self.width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), self.height)
        # MSAA (4 samples by default) costs 2.5x per frame under OSMesa (27 ms vs 68 ms measured at 64 px).
        if not multisample:
            model.vis.quality.offsamples = 0
        try:
            self._gl: mujoco.GLContext | None = mujoco.GLContext(self.width, self.height)
        except Exception as e:  # the backend was fixed at `import mujoco`; say how to pick a headless one
            raise RuntimeError(
                f"could not create a MuJoCo GL context (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}); "
                "set MUJOCO_GL=osmesa (needs Debian libosmesa6) or egl before Python imports mujoco"
            ) from e
        self._gl.make_current()
        self._ctx: mujoco.MjrContext | None = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._ctx)
        self._scene = mujoco.MjvScene(model, maxgeom=10_000)
        self._option = mujoco.MjvOption()
        for group in hidden_geom_groups:  # e.g. robosuite's collision geoms (group 0)
            self._option.geomgroup[group] = 0
        self._perturb = mujoco.MjvPerturb()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)

    def render(self, data: mujoco.MjData, camera_id: int, rotate_180: bool = False) -> np.ndarray:
        """One RGB frame, uint8 (H, W, 3), top row first (as an image file), from camera `camera_id`.

        `rotate_180` turns the image upright for cameras mounted upside down (Metaworld's).
        """
        if self._ctx is None or self._gl is None:
            raise RuntimeError("render() called after close()")
        self._camera.fixedcamid = camera_id
        mujoco.mjv_updateScene(
            self._model,
            data,
            self._option,
            self._perturb,
            self._camera,
            mujoco.mjtCatBit.mjCAT_ALL,
            self._scene,
        )
        for flag in _FLAGS_OFF:
            self._scene.flags[flag] = False
        self._gl.make_current()  # another renderer in this process may have made its context current
        mujoco.mjr_render(self._rect, self._scene, self._ctx)
        out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(out, None, self._rect, self._ctx)
        # OpenGL's first row is the bottom one: flip rows; a camera mounted upside down needs columns
        # flipped as well. Copy so callers get a contiguous array (torch.from_numpy rejects negative strides).
        return np.ascontiguousarray(out[:, ::-1] if rotate_180 else out[::-1])

    def close(self) -> None:
        """Free the GL resources, in this renderer's own context (see the module docstring)."""
        if self._gl is None:
            return
        self._gl.make_current()
        if self._ctx is not None:
            self._ctx.free()
            self._ctx = None
        self._gl.free()
        self._gl = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown the GL library may be gone already
            self.close()

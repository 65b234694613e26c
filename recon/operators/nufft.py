"""2D non-uniform FFT operator (non-Cartesian k-space), with autograd and a Toeplitz normal operator.

Definition (orthonormal, centred like :func:`recon.operators.fft.fft2c`): for an image ``x (H, W)`` and
k-space locations ``omega_k = (omega_k0, omega_k1)`` in radians per pixel, ``omega in [-pi, pi)``,

    y_k = 1/sqrt(H W) * sum_{n0, n1} x[n0, n1] * exp(-i (omega_k0 (n0 - H//2) + omega_k1 (n1 - W//2)))

``omega_k0`` is the frequency along H (axis -2, readout), ``omega_k1`` along W (axis -1). On the Cartesian
grid ``omega = 2 pi (m - N//2) / N`` this is exactly ``fft2c`` (tested).

Backend choice (``python benchmarks/operators.py`` on the 2-core CPU development machine, complex64; error
relative to an exact NUDFT in double precision, 32x32 image, 3000 random points; time of forward + adjoint for
8 coils, 256x256, radial 402 spokes x 512 samples):

    backend                             error     fwd+adj
    finufft eps=1e-3                    2.0e-3     53 ms
    finufft eps=1e-4 (our default)      1.3e-4     69 ms
    finufft eps=1e-5                    6.8e-6    139 ms
    finufft complex128 eps=1e-12        8.7e-13
    pytorch_finufft (eps=1e-4)          (same library)  70 ms
    torchkbnufft (defaults)             7.0e-4    722 ms
    sigpy (width 4, oversampling 1.25)  7.0e-3    416 ms
    our Toeplitz normal A.N (8 coils)               14 ms

* **finufft** (default on CPU): the most accurate and the fastest (6x faster than SigPy at 50x better accuracy). Type 1
  and type 2 share one kernel, so the adjoint is exact to rounding. The pytorch_finufft wrapper costs the
  same but re-plans on every call and has no Toeplitz form, so we wrap finufft's cached plans ourselves.
* **torchkbnufft**: pure torch, so it runs on GPU tensors as they are; used for CUDA tensors (``backend="auto"``)
  and selectable on CPU.

Neither library's plan is differentiable, so :class:`NUFFT` wraps both in a ``torch.autograd.Function``
whose backward is the adjoint transform (and the adjoint's backward the forward), so gradients - and
gradients of gradients - flow. Gradients with respect to the trajectory are not computed.

Multi-coil data use batch dims: image ``(..., C, H, W)`` with a trajectory ``(K, 2)`` gives ``(..., C, K)``;
per-slice trajectories ``(S, 1, K, 2)`` with images ``(S, C, H, W)`` give ``(S, C, K)``. Points that share a
trajectory are transformed together (finufft's ``n_trans``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from recon.errors import UsageError
from recon.operators.base import broadcast_shape, LinearOperator

BACKENDS = ("auto", "finufft", "torchkbnufft")
DEFAULT_EPS = {torch.complex64: 1e-4, torch.complex128: 1e-12}


def _cdtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype in (torch.complex128, torch.float64) else torch.complex64


class _Finufft:
    """finufft plans for ``T`` trajectories ``(T, K, 2)``, cached per (type, n_trans, precision)."""

    def __init__(self, traj: torch.Tensor, shape: tuple[int, int], eps: dict[torch.dtype, float]):
        # deferred: loads finufft, which importing recon.operators.nufft does not
        import finufft

        self.finufft = finufft
        self.traj = traj.detach().to("cpu", torch.float64).numpy()
        self.shape, self.eps = shape, eps
        self._plans: dict[tuple, list] = {}

    def _plan_list(self, kind: int, n_trans: int, dtype: torch.dtype, modes: tuple[int, int]) -> list:
        key = (kind, n_trans, dtype, modes)
        if key not in self._plans:
            single = dtype == torch.complex64
            fdtype = np.float32 if single else np.float64
            plans = []
            for t in range(self.traj.shape[0]):
                plan = self.finufft.Plan(
                    kind, modes, n_trans=n_trans, eps=max(self.eps[dtype], 1e-6 if single else 1e-14),
                    isign=-1 if kind == 2 else 1, dtype="complex64" if single else "complex128",
                    nthreads=torch.get_num_threads(),  # follow torch's thread setting
                )
                plan.setpts(np.ascontiguousarray(self.traj[t, :, 0], fdtype),
                            np.ascontiguousarray(self.traj[t, :, 1], fdtype))
                plans.append(plan)
            self._plans[key] = plans
        return self._plans[key]

    def type2(self, f: torch.Tensor) -> torch.Tensor:
        """``f (T, R, H, W)`` -> ``(T, R, K)``: ``sum_n f[n] exp(-i omega . (n - N//2))`` (unnormalised)."""
        T, R = f.shape[:2]
        plans = self._plan_list(2, R, f.dtype, self.shape)
        arr = f.detach().cpu().resolve_conj().contiguous().numpy()
        out = np.stack([plans[t].execute(arr[t]).reshape(R, -1) for t in range(T)])
        return torch.from_numpy(out).to(f.device)

    def type1(self, c: torch.Tensor, modes: tuple[int, int] | None = None) -> torch.Tensor:
        """``c (T, R, K)`` -> ``(T, R, *modes)``: ``sum_k c_k exp(+i omega_k . (n - N//2))`` (unnormalised)."""
        modes = modes or self.shape
        T, R = c.shape[:2]
        plans = self._plan_list(1, R, c.dtype, modes)
        arr = c.detach().cpu().resolve_conj().contiguous().numpy()
        out = np.stack([plans[t].execute(arr[t] if R > 1 else arr[t, 0]).reshape((R,) + modes) for t in range(T)])
        return torch.from_numpy(out).to(c.device)


class _TorchKbNufft:
    """torchkbnufft (Kaiser-Bessel interpolation in torch) for ``T`` trajectories ``(T, K, 2)``."""

    def __init__(self, traj: torch.Tensor, shape: tuple[int, int], eps: dict[torch.dtype, float]):
        # deferred: loads torchkbnufft, which importing recon.operators.nufft does not
        import torchkbnufft

        self.tkbn = torchkbnufft
        self.omega = traj.detach().permute(0, 2, 1)  # (T, 2, K)
        self.shape = shape
        self._ops: dict[tuple, torch.nn.Module] = {}

    def _op(self, adjoint: bool, modes: tuple[int, int], dtype: torch.dtype, device: torch.device):
        key = (adjoint, modes, dtype, str(device))
        if key not in self._ops:
            cls = self.tkbn.KbNufftAdjoint if adjoint else self.tkbn.KbNufft
            real = torch.float64 if dtype == torch.complex128 else torch.float32
            self._ops[key] = cls(im_size=modes, dtype=real, device=device)
        return self._ops[key]

    def _omega(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        real = torch.float64 if dtype == torch.complex128 else torch.float32
        return self.omega.to(device=device, dtype=real)

    def type2(self, f: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._op(False, self.shape, f.dtype, f.device)(f.detach(), self._omega(f.dtype, f.device))

    def type1(self, c: torch.Tensor, modes: tuple[int, int] | None = None) -> torch.Tensor:
        modes = modes or self.shape
        with torch.no_grad():
            return self._op(True, modes, c.dtype, c.device)(c.detach(), self._omega(c.dtype, c.device))


class _NufftFunction(torch.autograd.Function):
    """Raw (unweighted) NUFFT or its adjoint; the backward of each is the other."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: "NUFFT", adjoint: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.op, ctx.adjoint = op, adjoint
        return op._raw(x, adjoint)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _NufftFunction.apply(grad, ctx.op, not ctx.adjoint), None, None


class NUFFT(LinearOperator):
    """2D NUFFT: image ``(..., H, W)`` -> non-Cartesian k-space ``(..., K)``.

    Parameters
    ----------
    traj: ``(..., K, 2)`` k-space locations in radians per pixel, in ``[-pi, pi)``; component 0 along H,
        component 1 along W. Leading dims are trajectory batch dims (broadcast against the image's).
    shape: image size ``(H, W)``.
    weights: optional density-compensation weights ``w >= 0`` broadcastable to ``traj.shape[:-1]``. With
        weights the operator is ``A = diag(sqrt(w)) F`` (so ``A.H`` stays its exact adjoint and
        ``A.N = F^H W F``); :meth:`gridding` gives the density-compensated reconstruction ``F^H (w y)``.
    backend: ``"auto"`` (finufft for CPU tensors, torchkbnufft for GPU tensors), ``"finufft"`` or
        ``"torchkbnufft"``.
    eps: finufft's requested relative accuracy (default 1e-4 for complex64, 1e-12 for complex128);
        ignored by torchkbnufft.
    """

    def __init__(
        self,
        traj: torch.Tensor,
        shape: Sequence[int],
        weights: torch.Tensor | None = None,
        backend: str = "auto",
        eps: float | None = None,
    ):
        traj = torch.as_tensor(traj)
        if traj.ndim < 2 or traj.shape[-1] != 2:
            raise UsageError(f"NUFFT trajectory must have shape (..., K, 2), got {tuple(traj.shape)}")
        if traj.is_complex() or not torch.all(torch.isfinite(traj)):
            raise UsageError("NUFFT trajectory must be real and finite (radians in [-pi, pi))")
        if traj.numel() and float(traj.abs().max()) > math.pi * (1 + 1e-6):
            raise UsageError(
                f"NUFFT trajectory must be in radians in [-pi, pi); got max |omega| = {float(traj.abs().max()):.4g}"
            )
        if len(shape) != 2 or min(shape) < 1:
            raise UsageError(f"NUFFT image shape must be (H, W), got {tuple(shape)}")
        if backend not in BACKENDS:
            raise UsageError(f"unknown NUFFT backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.traj = traj.detach()
        self.traj_batch = tuple(traj.shape[:-2])
        self.num_points = int(traj.shape[-2])
        self.ishape = (int(shape[0]), int(shape[1]))
        self.oshape = (self.num_points,)
        self.backend = backend
        self.eps = dict(DEFAULT_EPS)
        if eps is not None:
            self.eps = {torch.complex64: float(eps), torch.complex128: float(eps)}
        self.sqrt_weights = None
        self.weights = None
        if weights is not None:
            weights = torch.as_tensor(weights)
            if weights.is_complex() or bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
                raise UsageError("density-compensation weights must be real, finite and >= 0")
            try:
                wshape = torch.broadcast_shapes(weights.shape, traj.shape[:-1])
            except RuntimeError:
                wshape = None
            if wshape != tuple(traj.shape[:-1]):
                raise UsageError(
                    f"weights of shape {tuple(weights.shape)} do not fit trajectory points {tuple(traj.shape[:-1])}"
                )
            self.weights = weights.detach()
            self.sqrt_weights = self.weights.sqrt()
        self._impl: dict[str, object] = {}
        self._kernels: dict[tuple, torch.Tensor] = {}

    # --- backend --------------------------------------------------------------------------------
    def _backend_for(self, device: torch.device):
        name = self.backend
        if name == "auto":
            name = "torchkbnufft" if device.type != "cpu" else "finufft"
        if name not in self._impl:
            traj = self.traj.reshape((-1, self.num_points, 2))
            cls = _Finufft if name == "finufft" else _TorchKbNufft
            self._impl[name] = cls(traj, self.ishape, self.eps)
        return self._impl[name]

    def _group(self, batch: tuple[int, ...]):
        """How to fold batch dims ``batch`` into ``(T, R)``: T trajectories, R transforms each."""
        try:
            full = tuple(broadcast_shape(batch, self.traj_batch))
        except RuntimeError:
            raise UsageError(
                f"batch dims {batch} do not fit the NUFFT trajectory's batch dims {self.traj_batch}"
            ) from None
        tb = (1,) * (len(full) - len(self.traj_batch)) + self.traj_batch
        tdims = [i for i in range(len(full)) if tb[i] != 1]
        odims = [i for i in range(len(full)) if tb[i] == 1]
        perm = tdims + odims
        T = int(np.prod([full[i] for i in tdims], dtype=np.int64))
        R = int(np.prod([full[i] for i in odims], dtype=np.int64))
        return full, perm, T, R

    def _raw(self, x: torch.Tensor, adjoint: bool) -> torch.Tensor:
        """Unweighted ``F x`` (``adjoint=False``, x ``(..., H, W)``) or ``F^H y`` (y ``(..., K)``)."""
        tail = self.oshape if adjoint else self.ishape
        out_tail = self.ishape if adjoint else self.oshape
        nt = len(tail)
        batch = tuple(x.shape[:-nt])
        full, perm, T, R = self._group(batch)
        n = len(full)
        x = x.to(_cdtype(x.dtype)).expand(full + tail)
        xg = x.permute(perm + list(range(n, n + nt))).reshape((T, R) + tail)
        impl = self._backend_for(x.device)
        out = impl.type1(xg) if adjoint else impl.type2(xg)
        out = out * (1.0 / math.sqrt(self.ishape[0] * self.ishape[1]))
        out = out.reshape(tuple(full[i] for i in perm) + out_tail)
        inv = [0] * n
        for j, i in enumerate(perm):
            inv[i] = j
        return out.permute(inv + list(range(n, n + len(out_tail)))).to(x.dtype)

    # --- operator -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.ishape:
            raise UsageError(f"image of shape {tuple(x.shape)} does not fit a NUFFT for {self.ishape}")
        if not x.is_complex():
            x = x.to(_cdtype(x.dtype))
        y = _NufftFunction.apply(x, self, False)
        if self.sqrt_weights is not None:
            y = y * self.sqrt_weights.to(device=y.device, dtype=y.real.dtype)
        return y

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim < 1 or y.shape[-1] != self.num_points:
            raise UsageError(f"k-space of shape {tuple(y.shape)} does not fit a NUFFT with {self.num_points} points")
        if not y.is_complex():
            y = y.to(_cdtype(y.dtype))
        if self.sqrt_weights is not None:
            y = y * self.sqrt_weights.to(device=y.device, dtype=y.real.dtype)
        return _NufftFunction.apply(y, self, True)

    def _shape_error(self, x, side: str) -> str:
        if side == "input":
            return f"image of shape {tuple(x.shape)} does not fit a NUFFT for {self.ishape}"
        return f"k-space of shape {tuple(x.shape)} does not fit a NUFFT with {self.num_points} points"

    def gridding(self, y: torch.Tensor) -> torch.Tensor:
        """Density-compensated adjoint ``F^H (w y)`` of raw samples ``y (..., K)`` (``F^H y`` without weights)."""
        if self.sqrt_weights is None:
            return self.adjoint(y)
        return self.adjoint(y * self.sqrt_weights.to(device=y.device, dtype=y.real.dtype))

    def normal(self) -> LinearOperator:
        return ToeplitzNormal(self)

    def toeplitz_kernel(self, dtype: torch.dtype = torch.complex64, device: torch.device | str = "cpu") -> torch.Tensor:
        """FFT of the ``(2H, 2W)`` circulant embedding of ``F^H W F``: ``traj_batch + (2H, 2W)``, real."""
        dtype, device = _cdtype(dtype), torch.device(device)
        key = (dtype, str(device))
        if key not in self._kernels:
            H, W = self.ishape
            ones = torch.ones(self.traj.shape[:-1], dtype=torch.float64)
            w = ones if self.weights is None else self.weights.to(torch.float64).expand(ones.shape)
            w = w.reshape(-1, 1, self.num_points).to(dtype)
            impl = self._backend_for(device)
            t = impl.type1(w.to(device), (2 * H, 2 * W))[:, 0] / (H * W)  # t[d], d = -N..N-1
            # F^H W F is Hermitian, so its circulant embedding has a real spectrum; taking the real part
            # symmetrises the (approximate) kernel and makes the operator exactly self-adjoint
            kernel = torch.fft.fft2(torch.fft.ifftshift(t, dim=(-2, -1))).real
            self._kernels[key] = kernel.reshape(self.traj_batch + (2 * H, 2 * W)).to(device)
        return self._kernels[key]

    def __repr__(self) -> str:
        return f"NUFFT(shape={self.ishape}, traj={tuple(self.traj.shape)}, backend={self.backend!r})"


class ToeplitzNormal(LinearOperator):
    """``A^H A`` of a :class:`NUFFT` by Toeplitz embedding: image ``(..., H, W)`` -> ``(..., H, W)``.

    ``x -> crop(ifft2(K * fft2(zero_pad(x, 2H, 2W))))`` with ``K`` = :meth:`NUFFT.toeplitz_kernel`
    (computed once, with one type-1 NUFFT onto the 2x grid): two FFTs on the 2x grid, no interpolation.
    """

    def __init__(self, nufft: NUFFT):
        self.nufft = nufft
        self.ishape = self.oshape = nufft.ishape

    def _shape_error(self, x, side: str) -> str:
        return self.nufft._shape_error(x, "input")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.ishape:
            raise UsageError(f"image of shape {tuple(x.shape)} does not fit a NUFFT for {self.ishape}")
        H, W = self.ishape
        x = x.to(_cdtype(x.dtype))
        kernel = self.nufft.toeplitz_kernel(x.dtype, x.device)
        k = torch.fft.fft2(x, s=(2 * H, 2 * W))
        k = k * kernel
        return torch.fft.ifft2(k)[..., :H, :W]

    adjoint = forward

    @property
    def H(self) -> LinearOperator:
        return self

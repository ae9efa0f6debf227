"""Elementary functions emitted as straight-line LLVM IR, so loops that use them vectorize.

A libm call per element keeps the loop vectorizer away and costs ~10x; these
emitters write the whole function inline (no branches, no calls except the
vectorizable intrinsics llvm.fmuladd / fabs / copysign), using `select` for
special cases.  Each `emit_<op>(builder, x)` takes a scalar `double` or `float`
and returns a value of the same type.

Contract (checked by tests/test_vmath.py against NumPy):
* IEEE special values: inf/-inf/nan inputs, overflow to inf, underflow to 0,
  log(0) = -inf, log(<0) = nan, tanh(+-inf) = +-1, ...  Results that fall in
  the subnormal range are produced with gradual underflow (correctly rounded
  final scaling); subnormal inputs are handled (log rescales them).
* The sign of a zero result is not guaranteed (the `nsz` flag is on).
* sin/cos/tan reduce the argument exactly for |x| <= TRIG_MAX (2**30) and
  return nan beyond it (no Payne-Hanek reduction); float32 trig is computed in
  float64 and rounded.
* All polynomial coefficients are minimax (Remez exchange in mpmath, 60 digits)
  fits rounded to the target precision; the stated error is of the rounded fit.
"""
import math
import struct

from llvmlite import ir

FASTMATH = ("nsz", "arcp", "contract", "afn")   # never nnan/ninf/reassoc: NaN/inf must survive

TRIG_MAX = 2.0 ** 30   # |x| beyond this: n*P1 in the pi/2 reduction is no longer exact


class _Emit:
    """Builder + one float type: constants, flagged fp ops and bit tricks."""

    def __init__(self, builder, ty):
        self.b, self.ty = builder, ty
        # a vector of floats works lane by lane: the same IR on <n x double>
        self.lanes = ty.count if isinstance(ty, ir.VectorType) else None
        elem = ty.element if self.lanes else ty
        self.f64 = isinstance(elem, ir.DoubleType)
        if not self.f64 and not isinstance(elem, ir.FloatType):
            raise TypeError("vmath: expected double or float, got %s" % ty)
        self.ity = self.like(ir.IntType(64 if self.f64 else 32))
        self.mbits = 52 if self.f64 else 23          # explicit mantissa bits
        self.bias = 1023 if self.f64 else 127

    def like(self, scalar_type):
        """`scalar_type`, or a vector of it with as many lanes as x."""
        return ir.VectorType(scalar_type, self.lanes) if self.lanes else scalar_type

    # constants (splatted across lanes)
    def c(self, v): return self._const(self.ty, v)
    def i(self, v): return self._const(self.ity, v)

    def _const(self, ty, v):
        return ir.Constant(ty, [v] * self.lanes) if self.lanes else ir.Constant(ty, v)
    def pick(self, v64, v32): return self.c(v64 if self.f64 else v32)

    # arithmetic, all with FASTMATH
    def add(self, a, b): return self.b.fadd(a, b, flags=FASTMATH)
    def sub(self, a, b): return self.b.fsub(a, b, flags=FASTMATH)
    def mul(self, a, b): return self.b.fmul(a, b, flags=FASTMATH)
    def div(self, a, b): return self.b.fdiv(a, b, flags=FASTMATH)

    def intr(self, name, *args):
        suffix = ("f64" if self.f64 else "f32")
        full = f"{name}.v{self.lanes}{suffix}" if self.lanes else f"{name}.{suffix}"
        fn = self.b.module.globals.get(full) or ir.Function(
            self.b.module, ir.FunctionType(self.ty, [self.ty] * len(args)), full)
        return self.b.call(fn, args, fastmath=FASTMATH)

    def fma(self, a, b, c): return self.intr("llvm.fmuladd", a, b, c)   # a*b+c, fused where the CPU can
    def abs(self, a): return self.intr("llvm.fabs", a)
    def copysign(self, a, s): return self.intr("llvm.copysign", a, s)

    def poly(self, x, coeffs):
        """Horner: coeffs[0] + x*(coeffs[1] + x*(...))."""
        acc = self.c(coeffs[-1])
        for k in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.c(k))
        return acc

    # comparisons and selection (ordered compares are false for nan)
    def cmp(self, op, a, b): return self.b.fcmp_ordered(op, a, b)
    def isnan(self, a): return self.b.fcmp_unordered("uno", a, a)
    def sel(self, cond, a, b): return self.b.select(cond, a, b)

    def clamp(self, x, lo, hi):
        """min(max(x, lo), hi) that lets nan through."""
        x = self.sel(self.cmp(">", x, self.c(hi)), self.c(hi), x)
        return self.sel(self.cmp("<", x, self.c(lo)), self.c(lo), x)

    # bit-level helpers
    def bits(self, a): return self.b.bitcast(a, self.ity)
    def fbits(self, n): return self.b.bitcast(n, self.ty)
    def pow2(self, k):
        """2**k for an integer k inside the normal exponent range: build the bits."""
        return self.fbits(self.b.shl(self.b.add(k, self.i(self.bias)), self.i(self.mbits)))

    def two_sum(self, a, b):
        """(s, e) with s = fl(a+b) and s + e = a + b exactly (Knuth; no ordering needed)."""
        s = self.add(a, b)
        bb = self.sub(s, a)
        e = self.add(self.sub(a, self.sub(s, bb)), self.sub(b, bb))
        return s, e


def _float_bits(v, f64):
    """The IEEE bit pattern of v as a signed integer (for integer-domain tricks)."""
    return struct.unpack("<q", struct.pack("<d", v))[0] if f64 else struct.unpack("<i", struct.pack("<f", v))[0]


# ---------------------------------------------------------------- exp family
# x = k*ln2 + r, |r| <= ln2/2 (Cody-Waite: LN2_HI has trailing zero bits, so
# k*LN2_HI is exact for |k| < 2**11 (f64) / 2**8 (f32) and x - k*LN2_HI is exact).
LN2_HI_64, LN2_LO_64 = float.fromhex("0x1.62e42fee00000p-1"), float.fromhex("0x1.a39ef35793c76p-33")
LN2_HI_32, LN2_LO_32 = float.fromhex("0x1.62e4p-1"), float.fromhex("0x1.7f7d1cf79abcap-20")

# expm1(r) = r + r^2 Q(r) on |r| <= 0.3474 (ln2/2 with slack), minimax fits:
#   Q64/Q32 for expm1, error weighted by |r| + 0.01 (~relative error of expm1):
#     f64 degree 10, 2^-60;  f32 degree 5, 2^-28.7
#   QE64/QE32 for exp only, relative error of e^r = 1 + r + r^2 Q:
#     f64 degree 9, 2^-56.5;  f32 degree 4, 2^-27.8
Q64 = [0.5, 0.16666666666666677, 0.0416666666666667, 0.008333333333321744,
       0.001388888888886704, 0.00019841269885973993, 2.4801587360382782e-05,
       2.755724425571182e-06, 2.755724278008429e-07, 2.5109052268212695e-08,
       2.0924465211779295e-09]
Q32 = [0.5000000044702536, 0.16666666815803988, 0.04166635849091225,
       0.008333273195056933, 0.0013940830603303162, 0.00019914152181149677]
QE64 = [0.5000000000000011, 0.16666666666666408, 0.04166666666652866, 0.008333333333496793,
        0.001388888894412363, 0.00019841269502732773, 2.4801492504402937e-05,
        2.7557588613089617e-06, 2.763048583353148e-07, 2.4999754169248538e-08]
QE32 = [0.49999993383289326, 0.16666519601205854, 0.041668399727000205,
        0.008368843930955827, 0.0013814355792083346]


def _exp_reduce(e, x):
    """Return (r, rlo, k) with x = k*ln2 + r + rlo, |r| <= ln2/2, k an integer of e.ity;
    rlo is the rounding error of r (expm1 needs it, exp does not)."""
    shift = 1.5 * 2.0 ** e.mbits              # adding it rounds to an integer held in the low mantissa bits
    t = e.fma(x, e.c(1 / math.log(2)), e.c(shift))
    kf = e.sub(t, e.c(shift))
    k = e.b.sub(e.bits(t), e.i(_float_bits(shift, e.f64)))
    r_hi = e.sub(x, e.mul(kf, e.pick(LN2_HI_64, LN2_HI_32)))       # exact
    k_lo = e.mul(kf, e.pick(LN2_LO_64, LN2_LO_32))
    r = e.sub(r_hi, k_lo)
    rlo = e.sub(e.sub(r_hi, r), k_lo)                                # Fast2Sum: |r_hi| >= |k_lo|
    return r, rlo, k


def _scale(e, p, k):
    """(1 + p) * 2**k, with 2**k split in two normal factors so that huge k
    overflows to inf and very negative k underflows gradually (one rounding)."""
    k1 = e.b.ashr(k, e.i(1))
    s1, s2 = e.pow2(k1), e.pow2(e.b.sub(k, k1))
    return e.mul(e.fma(p, s1, s1), s2)


def emit_exp(builder, x):
    """exp(x) = 2**k * (1 + r + r^2 QE(r)).  Inputs are clamped to [-760, 710]
    (f32: [-110, 90]), far enough for 0 / inf to come out of the scaling."""
    e = _Emit(builder, x.type)
    xc = e.clamp(x, *((-760.0, 710.0) if e.f64 else (-110.0, 90.0)))
    r, _, k = _exp_reduce(e, xc)
    return _scale(e, e.fma(e.mul(r, r), e.poly(r, QE64 if e.f64 else QE32), r), k)


def emit_expm1(builder, x):
    """expm1(x) = (2**k - 1) + 2**k r + 2**k tail, tail = r^2 Q(r) + rlo.  2**k r is
    exact, 2**k - 1 is kept as a sum of two floats, and the big terms are added
    with TwoSum, so the cancellation for k = +-1 costs no accuracy.
    k is capped at KBIG (the -1 is then below 2^-60 relative) and the rest of the
    power of two is applied afterwards, which overflows to inf where it should."""
    e = _Emit(builder, x.type)
    xc = e.clamp(x, *((-60.0, 710.0) if e.f64 else (-30.0, 90.0)))
    r, rlo, k = _exp_reduce(e, xc)
    tail = e.fma(e.mul(r, r), e.poly(r, Q64 if e.f64 else Q32), rlo)
    kbig = e.i(62 if e.f64 else 33)
    kc = e.b.select(e.b.icmp_signed(">", k, kbig), kbig, k)
    s = e.pow2(kc)
    s_1 = e.sub(s, e.c(1.0))
    s_1_err = e.sub(e.sub(s, s_1), e.c(1.0))            # s - 1 rounds only for k > mbits+1
    hi, lo = e.two_sum(s_1, e.mul(s, r))
    return e.mul(e.add(hi, e.fma(s, tail, e.add(lo, s_1_err))), e.pow2(e.b.sub(k, kc)))


# ---------------------------------------------------------------- log family
# u = 2**k * (1 + f), 1 + f in [sqrt(1/2), sqrt(2)); s = f / (2 + f) so that
# log(1 + f) = 2 atanh(s) = f - f^2/2 + s*(f^2/2 + R),  R = z*T(z), z = s^2 <= 0.02944
# (fdlibm's e_log.c arrangement).  T = (2 atanh(s)/s - 2)/z, minimax for the
# error weighted by z: f64 degree 6 (2^-58.1), f32 degree 2 (2^-29.0).
T64 = [0.6666666666666735, 0.3999999999941109, 0.28571428743262356, 0.22222198476039898,
       0.18183569736218042, 0.15313903354333666, 0.1479750650714543]
T32 = [0.6666677671700342, 0.39977495582834904, 0.2987307321460509]


def _log_core(e, u, kadj, c=None):
    """log(u) + c/u for finite u > 0 (u normal); kadj is added to the exponent."""
    d = e.b.sub(e.bits(u), e.i(_float_bits(math.sqrt(0.5), e.f64)))
    k = e.b.ashr(d, e.i(e.mbits))                       # u = 2**k * m, m in [sqrt(1/2), sqrt(2))
    m = e.fbits(e.b.sub(e.bits(u), e.b.shl(k, e.i(e.mbits))))
    f = e.sub(m, e.c(1.0))                               # exact (Sterbenz)
    two_f = e.add(e.c(2.0), f)
    if c is None:
        s, corr = e.div(f, two_f), e.c(0.0)
    else:   # one division for s = f/(2+f) and c/u = 2**-k (c - c f/m); c = 0 when k > 60.
        # c/u matters most for tiny x (k = 0, f ~ 0): there the rounded 1/m only
        # touches the small c f/m term.
        q = e.div(e.c(1.0), e.mul(two_f, m))
        s = e.mul(e.mul(f, m), q)
        kc = e.b.select(e.b.icmp_signed(">", k, e.i(60)), e.i(60), k)
        c_m = e.fma(e.b.fneg(e.mul(c, f), flags=FASTMATH), e.mul(two_f, q), c)
        corr = e.mul(c_m, e.pow2(e.b.neg(kc)))
    z = e.mul(s, s)
    R = e.mul(z, e.poly(z, T64 if e.f64 else T32))
    hfsq = e.mul(e.mul(e.c(0.5), f), f)
    kf = e.b.sitofp(e.b.add(k, kadj), e.ty)
    lo = e.add(e.mul(s, e.add(hfsq, R)), e.add(e.mul(kf, e.pick(LN2_LO_64, LN2_LO_32)), corr))
    return e.sub(e.mul(kf, e.pick(LN2_HI_64, LN2_HI_32)), e.sub(e.sub(hfsq, lo), f))


def _log_specials(e, u, y):
    """log(+inf) = inf, log(+-0) = -inf, log(<0) = nan, log(nan) = nan."""
    y = e.sel(e.cmp("==", u, e.c(math.inf)), e.c(math.inf), y)
    y = e.sel(e.cmp("==", u, e.c(0.0)), e.c(-math.inf), y)
    y = e.sel(e.cmp("<", u, e.c(0.0)), e.c(math.nan), y)
    return e.sel(e.isnan(u), u, y)


def emit_log(builder, x):
    """log(x); subnormal x is first scaled by 2**(mbits+2)."""
    e = _Emit(builder, x.type)
    sub = e.cmp("<", x, e.c(2.0 ** (1 - e.bias)))
    u = e.sel(sub, e.mul(x, e.c(2.0 ** (e.mbits + 2))), x)
    kadj = e.b.select(sub, e.i(-(e.mbits + 2)), e.i(0))
    return _log_specials(e, x, _log_core(e, u, kadj))


def emit_log1p(builder, x):
    """log1p(x) = log(u) + c/u with u = fl(1 + x), c = x - (u - 1) the rounding
    error of u (exact, as u - 1 is exact), so tiny x gives x."""
    e = _Emit(builder, x.type)
    u = e.add(e.c(1.0), x)
    c = e.sub(x, e.sub(u, e.c(1.0)))
    return _log_specials(e, u, _log_core(e, u, e.i(0), c))


# ---------------------------------------------------------------- built from exp/log
def emit_tanh(builder, x):
    """tanh(x) = sign(x) * t/(t + 2), t = expm1(2|x|); |x| is clamped at 20 (f32: 10)
    where tanh rounds to 1, so t stays finite."""
    e = _Emit(builder, x.type)
    ax = e.clamp(e.abs(x), 0.0, 20.0 if e.f64 else 10.0)
    t = emit_expm1(builder, e.add(ax, ax))
    return e.copysign(e.div(t, e.add(t, e.c(2.0))), x)


def emit_sigmoid(builder, x):
    """1/(1 + exp(-x)) for x >= 0, exp(x)/(1 + exp(x)) for x < 0: with
    u = exp(-|x|) <= 1 nothing overflows, and a single division."""
    e = _Emit(builder, x.type)
    u = emit_exp(builder, e.b.fneg(e.abs(x), flags=FASTMATH))
    num = e.sel(e.cmp(">=", x, e.c(0.0)), e.c(1.0), u)
    return e.div(num, e.add(e.c(1.0), u))


def emit_softplus(builder, x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)); nan propagates through exp."""
    e = _Emit(builder, x.type)
    u = emit_exp(builder, e.b.fneg(e.abs(x), flags=FASTMATH))
    return e.add(e.sel(e.cmp(">", x, e.c(0.0)), x, e.c(0.0)), emit_log1p(builder, u))


# ---------------------------------------------------------------- trigonometric
# x = n*pi/2 + r, |r| <= pi/4.  pi/2 = P1 + P2 + P3 + P4 + P5 where P1..P4 have
# 23 significant bits, so n*Pi is exact for |n| < 2**30, and P5 is the rounded
# rest (total error 7e-46).  x - n*P1 is exact (Sterbenz); the other products are
# subtracted with TwoSum, keeping the remainder as r + rlo.
PIO2 = [float.fromhex(h) for h in ("0x1.921fb4p+0", "0x1.4442d0p-24", "0x1.846988p-48",
                                   "0x1.8cc514p-72", "0x1.80dc1cd129025p-95")]
# sin(r) = r + r^3 S(z), cos(r) = 1 - z/2 + z^2 C(z), z = r^2 <= (pi/4)^2: minimax for
# the relative error of sin / cos: S64 2^-56.8, C64 2^-59.2; the degree-3 fits used
# for float32 inputs (evaluated in double) S32 2^-37.6, C32 2^-42.9.
S64 = [-0.16666666666666632, 0.008333333333322316, -0.0001984126982972524,
       2.7557313662070972e-06, -2.5050753266787292e-08, 1.5896505084959624e-10]
C64 = [0.041666666666666595, -0.0013888888888872895, 2.4801587288748213e-05,
       -2.755731414863257e-07, 2.0875696573996533e-09, -1.1358310570774196e-11]
S32 = [-0.16666666641426636, 0.008333329362293106, -0.00019839327140505037, 2.7182373135937576e-06]
C32 = [0.04166666661910674, -0.0013888883467255543, 2.4799451550881966e-05, -2.72050464077598e-07]


def _sincos_r(e, x, exact):
    """(sin r, cos r, n as i64) for x = n*pi/2 + r, all in double.  exact=False (float32
    inputs) drops the TwoSum bookkeeping: plain subtractions leave a relative error
    ~2^-50 in r, far below float32 resolution."""
    shift = 1.5 * 2.0 ** 52
    t = e.fma(x, e.c(2 / math.pi), e.c(shift))
    nf = e.sub(t, e.c(shift))
    n = e.bits(t)                                        # low bits = n mod 4
    r = e.sub(x, e.mul(nf, e.c(PIO2[0])))                # exact (Sterbenz)
    if not exact:
        for p in PIO2[1:]:
            r = e.sub(r, e.mul(nf, e.c(p)))
        z = e.mul(r, r)
        sin_r = e.fma(e.mul(r, z), e.poly(z, S32), r)
        cos_r = e.fma(e.mul(z, z), e.poly(z, C32), e.fma(e.c(-0.5), z, e.c(1.0)))
        return sin_r, cos_r, n
    lo = e.c(0.0)
    for p in PIO2[1:4]:
        r, err = e.two_sum(r, e.b.fneg(e.mul(nf, e.c(p)), flags=FASTMATH))
        lo = e.add(lo, err)
    r, rlo = e.two_sum(r, e.sub(lo, e.mul(nf, e.c(PIO2[4]))))
    z = e.mul(r, r)
    # sin(r + rlo) ~ r + r^3 S(z) + rlo (1 - z/2)
    sin_r = e.add(r, e.fma(e.mul(r, z), e.poly(z, S64), e.fma(e.mul(e.c(-0.5), z), rlo, rlo)))
    # cos(r + rlo) ~ w + ((1 - w) - z/2) + (z^2 C(z) - r rlo), w = 1 - z/2 (fdlibm k_cos.c)
    hz = e.mul(e.c(0.5), z)
    w = e.sub(e.c(1.0), hz)
    tail = e.sub(e.mul(e.mul(z, z), e.poly(z, C64)), e.mul(r, rlo))
    cos_r = e.add(w, e.add(e.sub(e.sub(e.c(1.0), w), hz), tail))
    return sin_r, cos_r, n


def _trig(builder, x, quadrant_shift, make):
    """Shared driver: f32 is widened to double; |x| > TRIG_MAX (and inf) give nan."""
    xe = _Emit(builder, x.type)
    xd = x if xe.f64 else builder.fpext(x, xe.like(ir.DoubleType()))
    e = _Emit(builder, xe.like(ir.DoubleType()))
    sin_r, cos_r, n = _sincos_r(e, xd, exact=xe.f64)
    y = make(e, sin_r, cos_r, builder.add(n, e.i(quadrant_shift)))
    y = e.sel(e.cmp(">", e.abs(xd), e.c(TRIG_MAX)), e.c(math.nan), y)
    return y if xe.f64 else builder.fptrunc(y, x.type)


def _sin_quadrant(e, sin_r, cos_r, n):
    """sin(n*pi/2 + r) = [sin r, cos r, -sin r, -cos r][n mod 4]: bit 1 of n is the sign."""
    y = e.sel(e.b.trunc(n, e.like(ir.IntType(1))), cos_r, sin_r)
    sign = e.b.shl(e.b.and_(n, e.i(2)), e.i(62))
    return e.fbits(e.b.xor(e.bits(y), sign))


def emit_sin(builder, x):
    return _trig(builder, x, 0, _sin_quadrant)


def emit_cos(builder, x):
    """cos(x) = sin(x + pi/2): the same kernel with n + 1."""
    return _trig(builder, x, 1, _sin_quadrant)


def emit_tan(builder, x):
    """tan = sin r / cos r for even n, -cos r / sin r for odd n."""
    def make(e, sin_r, cos_r, n):
        odd = e.b.trunc(n, e.like(ir.IntType(1)))
        num = e.sel(odd, cos_r, sin_r)
        den = e.sel(odd, e.b.fneg(sin_r, flags=FASTMATH), cos_r)
        return e.div(num, den)
    return _trig(builder, x, 0, make)


EMITTERS = {
    "exp": emit_exp, "expm1": emit_expm1, "log": emit_log, "log1p": emit_log1p,
    "tanh": emit_tanh, "sigmoid": emit_sigmoid, "softplus": emit_softplus,
    "sin": emit_sin, "cos": emit_cos, "tan": emit_tan,
}

"""Elementary functions emitted as straight-line LLVM IR, so loops that use them vectorize.

A libm call per element keeps the loop vectorizer away and costs ~10x; these
emitters write the whole function inline (no branches, no calls except the
vectorizable intrinsics llvm.fmuladd / fabs / copysign), using `select` for
special cases.  Each `emit_<op>(builder, x)` takes a scalar `double` or `float`,
or a vector of them, and returns a value of the same type.  The one exception
is sin/cos/tan: straight-line code up to a final branch, taken only when some
lane is beyond TRIG_MAX, to a call of a module-internal function for the
whole value (see the trigonometric section); the builder is left at the end of
a new block.  Nothing calls libm.

Contract (checked by tests/test_vmath.py against NumPy):
* IEEE special values: inf/-inf/nan inputs, overflow to inf, underflow to 0,
  log(0) = -inf, log(<0) = nan, tanh(+-inf) = +-1, ...  Results that fall in
  the subnormal range are produced with gradual underflow (correctly rounded
  final scaling); subnormal inputs are handled (log rescales them).
* The sign of a zero result is not guaranteed (the `nsz` flag is on).
* sin/cos/tan are accurate for every finite argument: inline (Cody-Waite)
  reduction for |x| <= TRIG_MAX (2**30), the bits of 2/pi (Payne-Hanek) beyond;
  float32 trig is computed in float64 and rounded.
* All polynomial coefficients are minimax (Remez exchange in mpmath, 60 digits)
  fits rounded to the target precision; the stated error is of the rounded fit.
"""
import math
import struct

from llvmlite import ir

FASTMATH = ("nsz", "arcp", "contract", "afn")   # never nnan/ninf/reassoc: NaN/inf must survive

TRIG_MAX = 2.0 ** 30   # |x| beyond this: n*P1 in the inline pi/2 reduction is no longer exact


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
        full = f"{name}.{_suffix(self.ty)}"
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


def _suffix(ty):
    """A float type as LLVM mangles it in intrinsic names: f64, f32, v8f64, ..."""
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{_suffix(ty.element)}"
    return "f64" if isinstance(ty, ir.DoubleType) else "f32"


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
# x = n*pi/2 + r, |r| <= pi/4, with two reductions:
# * |x| <= TRIG_MAX, inline on every lane (Cody-Waite): pi/2 = P1 + P2 + P3 + P4 + P5
#   where P1..P4 have 23 significant bits, so n*Pi is exact for |n| < 2**30, and P5
#   is the rounded rest (total error 7e-46).  x - n*P1 is exact (Sterbenz); the
#   other products are subtracted with TwoSum, keeping the remainder as r + rlo.
# * TRIG_MAX < |x| < inf, out of line (Payne-Hanek, `_reduce_big_function`): the
#   192 bits of 2/pi that matter for x's exponent, multiplied by x's significand
#   in integer arithmetic, give x*2/pi mod 4 exactly enough for r + rlo.
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


def _pi_scaled(bits: int) -> int:
    """pi * 2**bits within a few units, by Machin's formula in integers (16 guard bits)."""
    prec = bits + 16

    def atan_inv(k):   # atan(1/k) * 2**prec, alternating series truncated term by term
        total, power, i = 0, (1 << prec) // k, 0
        while power:
            total += (-1) ** i * (power // (2 * i + 1))
            power //= k * k
            i += 1
        return total
    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> 16


def _two_over_pi_table(words: int) -> list[int]:
    """64 zero bits (so that no exponent indexes before the table), then the
    fraction bits of 2/pi, as `words` 64-bit words, most significant first."""
    nbits = 64 * (words - 1)
    frac = (1 << (2 * nbits + 65)) // _pi_scaled(nbits + 64)   # floor(2/pi * 2**nbits)
    return [0] + [(frac >> (64 * k)) & (2 ** 64 - 1) for k in reversed(range(words - 1))]


# Words 0..19 cover the windows of every exponent (the last one, inf/nan, starts at
# bit 1034 of the padded table and ends in word 19).
TWO_OVER_PI = _two_over_pi_table(20)
PIO2_FIXED = _pi_scaled(125)            # pi/2 * 2**126, in [2**126, 2**127)
_TABLE, _BIG_REDUCE = "chainrule.two_over_pi", "chainrule.trig_reduce_big"


def _i(bits, v):
    """An integer constant; values >= 2**(bits-1) are given in two's complement."""
    return ir.Constant(ir.IntType(bits), v - (1 << bits) if v >= 1 << (bits - 1) else v)


def _call(b, name, ret, args):
    """Call the LLVM intrinsic `name` (its full, type-mangled name) returning `ret`."""
    fn = b.module.globals.get(name) or ir.Function(
        b.module, ir.FunctionType(ret, [a.type for a in args]), name)
    return b.call(fn, args)


def _narrow(b, v, shift):
    """Bits shift .. shift+63 of the integer v, as an i64."""
    return b.trunc(b.lshr(v, _i(v.type.width, shift)), ir.IntType(64))


def _mul_wide(b, a, c):
    """The 128-bit product of two i64 (one `mul` on x86-64; wider multiplies can
    become libcalls)."""
    i128 = ir.IntType(128)
    return b.mul(b.zext(a, i128), b.zext(c, i128))


def _table(module):
    """The padded 2/pi table, one internal constant per module."""
    g = module.globals.get(_TABLE)
    if g is None:
        ty = ir.ArrayType(ir.IntType(64), len(TWO_OVER_PI))
        g = ir.GlobalVariable(module, ty, _TABLE)
        g.linkage, g.global_constant, g.unnamed_addr = "internal", True, True
        g.initializer = ir.Constant(ty, [_i(64, w) for w in TWO_OVER_PI])
    return g


def _scaled_by_two_over_pi(b, bits):
    """x*2/pi mod 4 as the words (p2, p1, p0) of a 192-bit P, x*2/pi = P * 2**-190
    (mod 4), up to 2**-137.

    x = m * 2**e with m the 53-bit significand.  Bit k of 2/pi (weight 2**-k)
    contributes m * 2**(e-k), a multiple of 4 for k <= e - 2: only bits from
    k = e - 1 on matter, and 192 of them (window w) leave an error below
    2**(53+e) * 2**-(e+190) = 2**-137.  Then x*2/pi = m*w * 2**-190 and P = m*w
    mod 2**192."""
    i64 = ir.IntType(64)
    m = b.or_(b.and_(bits, _i(64, 2 ** 52 - 1)), _i(64, 2 ** 52))
    # where bit k = e - 1 sits in the padded table (64 zero bits first): index 62 + e
    first = b.sub(b.and_(b.lshr(bits, _i(64, 52)), _i(64, 0x7ff)), _i(64, 1075 - 62))
    # never negative for |x| > 2**30; lanes of small x are computed and discarded
    first = b.select(b.icmp_signed("<", first, _i(64, 0)), _i(64, 0), first)
    q, s = b.lshr(first, _i(64, 6)), b.and_(first, _i(64, 63))
    table = _table(b.module)
    words = [b.load(b.gep(table, [_i(32, 0), b.add(q, _i(64, k))], inbounds=True)) for k in range(4)]
    w = [_call(b, "llvm.fshl.i64", i64, [words[k], words[k + 1], s]) for k in range(3)]
    low = _mul_wide(b, m, w[2])
    mid = b.add(_mul_wide(b, m, w[1]), b.zext(_narrow(b, low, 64), ir.IntType(128)))   # < 2**118
    return b.add(_narrow(b, mid, 64), b.mul(m, w[0])), b.trunc(mid, i64), b.trunc(low, i64)


def _fraction_times_pio2(b, f2, f1, f0):
    """(hi, lo) doubles, hi + lo = f * pi/2 to ~2**-120 relative, for the fraction
    f = (f2, f1, f0) * 2**-192.

    f is normalised by the leading zeros of f2: at most 62 for any double (the
    closest a double comes to a multiple of pi/2 is |r| = 4.7e-19, Kahan and
    McDonald), so f2 != 0 and the shifted top 128 bits keep >= 128 bits of f.
    Times PIO2_FIXED, 128 bits of the product are split into 53 exact bits and
    the next 64, rounded."""
    i64, f64 = ir.IntType(64), ir.DoubleType()
    lz = _call(b, "llvm.ctlz.i64", i64, [f2, ir.Constant(ir.IntType(1), 0)])
    h = _call(b, "llvm.fshl.i64", i64, [f2, f1, lz])
    l = _call(b, "llvm.fshl.i64", i64, [f1, f0, lz])
    c1, c0 = _i(64, PIO2_FIXED >> 64), _i(64, PIO2_FIXED & (2 ** 64 - 1))
    # (h, l) * (c1, c0) / 2**128 without l*c0 and the low carries: 2**-125 relative
    top = b.add(_mul_wide(b, h, c1), b.zext(b.add(_narrow(b, _mul_wide(b, h, c0), 64),
                                                  _narrow(b, _mul_wide(b, l, c1), 64)), ir.IntType(128)))
    # top is in [2**125, 2**127) and stands for top * 2**(-126 - lz)

    def scaled(integer, exponent):   # integer * 2**(exponent - lz): build the power's bits
        p = b.bitcast(b.shl(b.sub(_i(64, 1023 + exponent), lz), _i(64, 52)), f64)
        return b.fmul(integer, p)
    hi = scaled(b.sitofp(_narrow(b, top, 75), f64), -51)          # < 2**52: exact
    lo = scaled(b.uitofp(_narrow(b, top, 11), f64), -115)         # the next 64 bits, rounded
    s = b.fadd(hi, lo)                                            # Fast2Sum, strict IEEE (no flags)
    return s, b.fsub(lo, b.fsub(s, hi))


def _reduce_big_function(module) -> ir.Function:
    """`{double r_hi, double r_lo, i64 n} chainrule.trig_reduce_big(double x)`:
    x = n*pi/2 + r_hi + r_lo, |r_hi| <= pi/4, for finite |x| > TRIG_MAX (others:
    garbage, but no out-of-bounds access).  Out of line, cold and called only when
    a lane needs it; integer arithmetic on i64/i128 and strict float ops, no libm."""
    fn = module.globals.get(_BIG_REDUCE)
    if fn is not None:
        return fn
    f64, i64 = ir.DoubleType(), ir.IntType(64)
    ret = ir.LiteralStructType([f64, f64, i64])
    fn = ir.Function(module, ir.FunctionType(ret, [f64]), _BIG_REDUCE)
    fn.linkage = "internal"
    for attr in ("noinline", "nounwind", "cold"):
        fn.attributes.add(attr)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    bits = b.bitcast(fn.args[0], i64)
    p2, p1, p0 = _scaled_by_two_over_pi(b, bits)
    frac = [_call(b, "llvm.fshl.i64", i64, [p2, p1, _i(64, 2)]),
            _call(b, "llvm.fshl.i64", i64, [p1, p0, _i(64, 2)]), b.shl(p0, _i(64, 2))]
    neg = b.icmp_signed("<", frac[0], _i(64, 0))      # fraction >= 1/2: n + 1, and r < 0 ...
    frac = [b.xor(word, b.sext(neg, i64)) for word in frac]   # ... of size 1 - fraction (to 2**-192)
    n = b.add(b.lshr(p2, _i(64, 62)), b.zext(neg, i64))
    hi, lo = _fraction_times_pio2(b, *frac)
    negative_x = b.icmp_signed("<", bits, _i(64, 0))   # reduce |x|, then x = -n*pi/2 - r
    flip = b.xor(negative_x, neg)
    out = ir.Constant(ret, ir.Undefined)
    for k, v in enumerate((b.select(flip, b.fneg(hi), hi), b.select(flip, b.fneg(lo), lo),
                           b.select(negative_x, b.neg(n), n))):
        out = b.insert_value(out, v, k)
    b.ret(out)
    return fn


def _reduce_small(e, x, exact):
    """(r, rlo, n as i64) for |x| <= TRIG_MAX (Cody-Waite).  exact=False (float32
    inputs) drops the TwoSum bookkeeping (rlo = 0): plain subtractions leave a
    relative error ~2^-50 in r, far below float32 resolution."""
    shift = 1.5 * 2.0 ** 52
    t = e.fma(x, e.c(2 / math.pi), e.c(shift))
    nf = e.sub(t, e.c(shift))
    n = e.bits(t)                                        # low bits = n mod 4
    r = e.sub(x, e.mul(nf, e.c(PIO2[0])))                # exact (Sterbenz)
    if not exact:
        for p in PIO2[1:]:
            r = e.sub(r, e.mul(nf, e.c(p)))
        return r, e.c(0.0), n
    lo = e.c(0.0)
    for p in PIO2[1:4]:
        r, err = e.two_sum(r, e.b.fneg(e.mul(nf, e.c(p)), flags=FASTMATH))
        lo = e.add(lo, err)
    r, rlo = e.two_sum(r, e.sub(lo, e.mul(nf, e.c(PIO2[4]))))
    return r, rlo, n


def _reduce_by_table(e, x, small):
    """`small` = (r, rlo, n) for a scalar double x, replaced by the result of
    `chainrule.trig_reduce_big` when |x| > TRIG_MAX (and inf, made nan later)."""
    res = e.b.call(_reduce_big_function(e.b.module), [x])
    big = e.cmp(">", e.abs(x), e.c(TRIG_MAX))
    return [e.sel(big, e.b.extract_value(res, k), s) for k, s in enumerate(small)]


def _sincos_kernel(e, r, rlo, exact):
    """(sin, cos) of r + rlo, |r| <= pi/4 (exact=False: of r, float32 accuracy)."""
    z = e.mul(r, r)
    if not exact:
        sin_r = e.fma(e.mul(r, z), e.poly(z, S32), r)
        cos_r = e.fma(e.mul(z, z), e.poly(z, C32), e.fma(e.c(-0.5), z, e.c(1.0)))
        return sin_r, cos_r
    # sin(r + rlo) ~ r + r^3 S(z) + rlo (1 - z/2)
    sin_r = e.add(r, e.fma(e.mul(r, z), e.poly(z, S64), e.fma(e.mul(e.c(-0.5), z), rlo, rlo)))
    # cos(r + rlo) ~ w + ((1 - w) - z/2) + (z^2 C(z) - r rlo), w = 1 - z/2 (fdlibm k_cos.c)
    hz = e.mul(e.c(0.5), z)
    w = e.sub(e.c(1.0), hz)
    tail = e.sub(e.mul(e.mul(z, z), e.poly(z, C64)), e.mul(r, rlo))
    cos_r = e.add(w, e.add(e.sub(e.sub(e.c(1.0), w), hz), tail))
    return sin_r, cos_r


def _sin_quadrant(e, sin_r, cos_r, n):
    """sin(n*pi/2 + r) = [sin r, cos r, -sin r, -cos r][n mod 4]: bit 1 of n is the sign."""
    y = e.sel(e.b.trunc(n, e.like(ir.IntType(1))), cos_r, sin_r)
    sign = e.b.shl(e.b.and_(n, e.i(2)), e.i(62))
    return e.fbits(e.b.xor(e.bits(y), sign))


def _tan_quadrant(e, sin_r, cos_r, n):
    """tan = sin r / cos r for even n, -cos r / sin r for odd n."""
    odd = e.b.trunc(n, e.like(ir.IntType(1)))
    num = e.sel(odd, cos_r, sin_r)
    den = e.sel(odd, e.b.fneg(sin_r, flags=FASTMATH), cos_r)
    return e.div(num, den)


def _quadrant(e, sin_r, cos_r, n, tan):
    """The result from sin r, cos r and n: tan is a bool (chosen here) or an i1
    argument (both computed, one selected: the shared big-argument path)."""
    if isinstance(tan, bool):
        return (_tan_quadrant if tan else _sin_quadrant)(e, sin_r, cos_r, n)
    return e.sel(tan, _tan_quadrant(e, sin_r, cos_r, n), _sin_quadrant(e, sin_r, cos_r, n))


# op: (added to n, tan?); cos(x) = sin(x + pi/2)
_TRIG = {"sin": (0, False), "cos": (1, False), "tan": (0, True)}


def _in_double(builder, x, compute):
    """compute(e, xd, exact) on x widened to double (f32: exact=False, the float32
    kernel), its result rounded back to x's type."""
    xe = _Emit(builder, x.type)
    xd = x if xe.f64 else builder.fpext(x, xe.like(ir.DoubleType()))
    y = compute(_Emit(builder, xe.like(ir.DoubleType())), xd, xe.f64)
    return y if xe.f64 else builder.fptrunc(y, x.type)


def _trig_small(builder, x, op):
    """op(x) by the inline reduction, on any type: right for |x| <= TRIG_MAX and nan."""
    shift, tan = _TRIG[op]

    def compute(e, xd, exact):
        r, rlo, n = _reduce_small(e, xd, exact)
        return _quadrant(e, *_sincos_kernel(e, r, rlo, exact), builder.add(n, e.i(shift)), tan)
    return _in_double(builder, x, compute)


def _trig_any(builder, x, shift, tan):
    """sin/cos/tan (shift: i64 added to n, tan: i1) of a scalar x of any value: the
    table reduction beyond TRIG_MAX, inf gives nan."""
    def compute(e, xd, exact):
        r, rlo, n = _reduce_by_table(e, xd, _reduce_small(e, xd, exact))
        y = _quadrant(e, *_sincos_kernel(e, r, rlo, exact), builder.add(n, shift), tan)
        return e.sel(e.cmp("==", e.abs(xd), e.c(math.inf)), e.c(math.nan), y)
    return _in_double(builder, x, compute)


def _big_function(module, ty) -> ir.Function:
    """`T chainrule.trig_big.<T>(T x, i64 shift, i1 tan)`: `_trig_any` on every lane.
    One per type for the three ops, and a vector version just calls the scalar
    one lane by lane: this is the rare path, and one copy of the kernel keeps
    compiles short."""
    name = f"chainrule.trig_big.{_suffix(ty)}"
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(ty, [ty, ir.IntType(64), ir.IntType(1)]), name)
    fn.linkage = "internal"
    for attr in ("noinline", "nounwind", "cold"):
        fn.attributes.add(attr)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    x, shift, tan = fn.args
    if not isinstance(ty, ir.VectorType):
        b.ret(_trig_any(b, x, shift, tan))
        return fn
    scalar = _big_function(module, ty.element)
    y = x
    for lane in range(ty.count):
        y_lane = b.call(scalar, [b.extract_element(x, _i(32, lane)), shift, tan])
        y = b.insert_element(y, y_lane, _i(32, lane))
    b.ret(y)
    return fn


def _trig(builder, x, op):
    """op(x) inline for |x| <= TRIG_MAX; if any lane is beyond (or inf), the whole
    vector is recomputed by `_big_function` instead, behind a branch marked
    unlikely.  When the caller returns the result at once (mathfns does), that
    call becomes a tail call (jmp): nothing is live across a call, so the fast
    path needs no stack frame or saved registers."""
    e = _Emit(builder, x.type)
    y = _trig_small(builder, x, op)
    big = e.cmp(">", e.abs(x), e.c(TRIG_MAX))
    any_big = _call(builder, f"llvm.vector.reduce.or.v{e.lanes}i1", ir.IntType(1), [big]) if e.lanes else big
    fast = builder.block
    slow, done = builder.append_basic_block("trig.big"), builder.append_basic_block("trig.done")
    builder.cbranch(any_big, slow, done).set_weights([1, 1 << 20])
    builder.position_at_end(slow)
    shift, tan = _TRIG[op]
    args = [x, _i(64, shift), ir.Constant(ir.IntType(1), int(tan))]
    y_big = builder.call(_big_function(builder.module, x.type), args, tail=True)
    builder.branch(done)
    builder.position_at_end(done)
    out = builder.phi(x.type)
    out.add_incoming(y, fast)
    out.add_incoming(y_big, slow)
    return out


def emit_sin(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """sin(x); see `_trig`."""
    return _trig(builder, x, "sin")


def emit_cos(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """cos(x) = sin(x + pi/2): the sin kernel with n + 1."""
    return _trig(builder, x, "cos")


def emit_tan(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tan(x) from the same sin r / cos r as sin and cos."""
    return _trig(builder, x, "tan")


EMITTERS = {
    "exp": emit_exp, "expm1": emit_expm1, "log": emit_log, "log1p": emit_log1p,
    "tanh": emit_tanh, "sigmoid": emit_sigmoid, "softplus": emit_softplus,
    "sin": emit_sin, "cos": emit_cos, "tan": emit_tan,
}

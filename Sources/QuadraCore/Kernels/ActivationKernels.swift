/// Vectorized transcendental functions for activations and softmax.
///
/// Eight lanes at a time with only add/multiply/FMA/divide and integer bit tricks, so they
/// compile to AVX2 (or NEON) instructions instead of a libm call per element. Loop tails go
/// through the same vector code (``loadPartial(_:count:)``), so results do not depend on
/// where an element falls in a row.
package enum ActivationKernels {
  /// e^x, accurate to about 2 ulp for x in [-87.3, 88.3]; inputs outside are clamped
  /// (so the result never overflows to infinity or underflows to a denormal).
  ///
  /// Cephes' `expf`: x = n·ln2 + r with |r| ≤ ln2/2, e^r = 1 + r + r²·P(r) with a degree-5 P,
  /// and 2ⁿ assembled directly in the exponent bits.
  @inline(__always)
  static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // Compare-and-select rather than `clamped(lowerBound:upperBound:)`, which is not inlined
    // (it becomes two library calls per vector).
    let low = SIMD8<Float>(repeating: -87.3), high = SIMD8<Float>(repeating: 88.3)
    let clamped = x.replacing(with: low, where: x .< low).replacing(with: high, where: x .> high)
    // Adding 1.5·2²³ rounds to the nearest integer and leaves it in the low mantissa bits.
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let t = magic.addingProduct(clamped, SIMD8(repeating: 1.442_695_040_888_963_4))
    let n = t - magic
    // Two-part ln2 (the first part has few mantissa bits, so n·ln2_hi is exact) keeps r accurate.
    var r = clamped.addingProduct(n, SIMD8(repeating: -0.693_359_375))
    r = r.addingProduct(n, SIMD8(repeating: 2.121_944_4e-4))
    var p = SIMD8<Float>(repeating: 1.398_199_950_7e-3).addingProduct(SIMD8(repeating: 1.987_569_150_0e-4), r)
    p = SIMD8<Float>(repeating: 8.333_451_907_3e-3).addingProduct(p, r)
    p = SIMD8<Float>(repeating: 4.166_579_589_4e-2).addingProduct(p, r)
    p = SIMD8<Float>(repeating: 1.666_666_545_9e-1).addingProduct(p, r)
    p = SIMD8<Float>(repeating: 5.000_000_120_1e-1).addingProduct(p, r)
    let er = (r + 1).addingProduct(p, r * r)
    // n sits in the low bits of t; shifting them into the exponent field and adding the
    // bias gives the bit pattern of 2ⁿ (the high bits of the magic constant shift out).
    let bits = (unsafeBitCast(t, to: SIMD8<UInt32>.self) &<< 23) &+ SIMD8(repeating: 127 << 23)
    return er * unsafeBitCast(bits, to: SIMD8<Float>.self)
  }

  /// erf(z) and e^(−z²) together (GELU's forward and backward need both).
  ///
  /// Abramowitz & Stegun 7.1.26: erf(|z|) = 1 − t·(a₁ + t(a₂ + t(a₃ + t(a₄ + t·a₅))))·e^(−z²) with
  /// t = 1/(1 + p|z|); absolute error ≤ 1.5·10⁻⁷ (plus Float rounding, < 5·10⁻⁷ in total).
  @inline(__always)
  static func erfAndGaussian(_ z: SIMD8<Float>) -> (erf: SIMD8<Float>, gaussian: SIMD8<Float>) {
    let bits = unsafeBitCast(z, to: SIMD8<UInt32>.self)
    let sign = bits & SIMD8(repeating: 0x8000_0000)
    let a = unsafeBitCast(bits & SIMD8(repeating: 0x7FFF_FFFF), to: SIMD8<Float>.self)
    let t = 1 / SIMD8<Float>(repeating: 1).addingProduct(a, SIMD8(repeating: 0.327_591_1))
    var poly = SIMD8<Float>(repeating: -1.453_152_027).addingProduct(SIMD8(repeating: 1.061_405_429), t)
    poly = SIMD8<Float>(repeating: 1.421_413_741).addingProduct(poly, t)
    poly = SIMD8<Float>(repeating: -0.284_496_736).addingProduct(poly, t)
    poly = SIMD8<Float>(repeating: 0.254_829_592).addingProduct(poly, t)
    poly *= t
    let gaussian = exp(-(a * a))
    let magnitude = 1 - poly * gaussian
    let erf = unsafeBitCast(unsafeBitCast(magnitude, to: SIMD8<UInt32>.self) | sign, to: SIMD8<Float>.self)
    return (erf, gaussian)
  }

  static let inverseSquareRootOf2: Float = 0.707_106_781_186_547_5
  static let inverseSquareRootOf2Pi: Float = 0.398_942_280_401_432_7

  /// erf(x) as a rational function on [−4, 4] (Eigen's `generic_fast_erf_float`): x·P(x²)/Q(x²)
  /// with P of degree 6 and Q of degree 4; outside ±4, erf is ±1 to Float precision.
  /// Absolute error < 3·10⁻⁷. It needs no exponential, so the GELU forward pass uses it
  /// (measured 1.7× faster than ``erfAndGaussian(_:)``), while backward, which needs e^(−z²)
  /// anyway, uses the latter.
  @inlinable @inline(__always)
  package static func erf(_ z: SIMD8<Float>) -> SIMD8<Float> {
    let low = SIMD8<Float>(repeating: -4), high = SIMD8<Float>(repeating: 4)
    let x = z.replacing(with: low, where: z .< low).replacing(with: high, where: z .> high)
    let x2 = x * x
    var p = SIMD8<Float>(repeating: 2.770_681_424_959_02e-08).addingProduct(x2, SIMD8(repeating: -2.726_142_258_013_06e-10))
    p = SIMD8<Float>(repeating: -2.101_024_020_825_08e-06).addingProduct(x2, p)
    p = SIMD8<Float>(repeating: -5.692_506_394_623_46e-05).addingProduct(x2, p)
    p = SIMD8<Float>(repeating: -7.349_906_303_268_55e-04).addingProduct(x2, p)
    p = SIMD8<Float>(repeating: -2.954_599_808_540_25e-03).addingProduct(x2, p)
    p = SIMD8<Float>(repeating: -1.609_603_332_624_15e-02).addingProduct(x2, p)
    var q = SIMD8<Float>(repeating: -2.133_740_552_789_05e-04).addingProduct(x2, SIMD8(repeating: -1.456_607_184_649_96e-05))
    q = SIMD8<Float>(repeating: -1.682_826_974_382_03e-03).addingProduct(x2, q)
    q = SIMD8<Float>(repeating: -7.373_329_167_204_68e-03).addingProduct(x2, q)
    q = SIMD8<Float>(repeating: -1.426_473_905_141_89e-02).addingProduct(x2, q)
    return x * p / q
  }

  /// GELU(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)).
  @inlinable @inline(__always)
  package static func gelu(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // The literal 1/√2 (not `inverseSquareRootOf2`): inlinable code across modules sees only inlinable names.
    0.5 * x * (1 + erf(x * 0.707_106_781_186_547_5))
  }

  /// GELU′(x) = Φ(x) + x·φ(x) with φ(x) = e^(−x²/2)/√(2π).
  @inline(__always)
  static func geluDerivative(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let (erf, gaussian) = erfAndGaussian(x * inverseSquareRootOf2)
    let cdf = 0.5 * (1 + erf)
    return cdf.addingProduct(x * gaussian, SIMD8(repeating: inverseSquareRootOf2Pi))
  }

  /// Loads `count` < 8 elements into the low lanes (the rest are 0).
  @inline(__always)
  static func loadPartial(_ pointer: UnsafePointer<Float>, count: Int) -> SIMD8<Float> {
    var v = SIMD8<Float>()
    for i in 0..<count { v[i] = pointer[i] }
    return v
  }

  /// Stores the low `count` < 8 lanes.
  @inline(__always)
  static func storePartial(_ value: SIMD8<Float>, _ pointer: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { pointer[i] = value[i] }
  }

  /// `d[i] = g[i] · GELU′(x[i])` over `n` elements (`d` may be `g`).
  @inline(__always)
  static func geluBackward(
    _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, count n: Int
  ) {
    var i = 0
    while i + 8 <= n {
      ElementwiseKernels.store(ElementwiseKernels.load(g + i) * geluDerivative(ElementwiseKernels.load(x + i)), d + i)
      i += 8
    }
    if i < n {
      let derivative = geluDerivative(loadPartial(x + i, count: n - i))
      storePartial(loadPartial(g + i, count: n - i) * derivative, d + i, count: n - i)
    }
  }

  /// `activated[i] = GELU(x[i])` and `derivative[i] = GELU′(x[i])` from one erf and one exponential
  /// per element (a backward pass that needs both would otherwise evaluate erf twice).
  @inline(__always)
  static func geluWithDerivative(
    _ x: UnsafePointer<Float>, activated: UnsafeMutablePointer<Float>, derivative: UnsafeMutablePointer<Float>,
    count n: Int
  ) {
    @inline(__always) func both(_ v: SIMD8<Float>) -> (SIMD8<Float>, SIMD8<Float>) {
      let (erf, gaussian) = erfAndGaussian(v * inverseSquareRootOf2)
      let cdf = 0.5 * (1 + erf)
      return (v * cdf, cdf.addingProduct(v * gaussian, SIMD8(repeating: inverseSquareRootOf2Pi)))
    }
    var i = 0
    while i + 8 <= n {
      let (a, d) = both(ElementwiseKernels.load(x + i))
      ElementwiseKernels.store(a, activated + i)
      ElementwiseKernels.store(d, derivative + i)
      i += 8
    }
    if i < n {
      let (a, d) = both(loadPartial(x + i, count: n - i))
      storePartial(a, activated + i, count: n - i)
      storePartial(d, derivative + i, count: n - i)
    }
  }

  /// `out[i] = f(x[i])` over `n` elements with a vector function.
  @inline(__always)
  static func map(
    _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int,
    _ f: (SIMD8<Float>) -> SIMD8<Float>
  ) {
    var i = 0
    while i + 8 <= n {
      ElementwiseKernels.store(f(ElementwiseKernels.load(x + i)), out + i)
      i += 8
    }
    if i < n { storePartial(f(loadPartial(x + i, count: n - i)), out + i, count: n - i) }
  }
}

/// One softmax row, shared by the softmax and cross-entropy kernels.
enum SoftmaxRow {
  /// Writes softmax(x) to `y` and returns (max, Σ e^(x − max)), from which log-sum-exp follows.
  @inline(__always)
  static func compute(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count c: Int) -> (max: Float, sum: Float) {
    var m = -Float.infinity
    for j in 0..<c { m = Swift.max(m, x[j]) }
    let mv = SIMD8<Float>(repeating: m)
    var s = SIMD8<Float>()
    var tail: Float = 0
    var j = 0
    while j + 8 <= c {
      let e = ActivationKernels.exp(ElementwiseKernels.load(x + j) - mv)
      ElementwiseKernels.store(e, y + j)
      s += e
      j += 8
    }
    if j < c {
      let e = ActivationKernels.exp(ActivationKernels.loadPartial(x + j, count: c - j) - mv)
      ActivationKernels.storePartial(e, y + j, count: c - j)
      for k in 0..<(c - j) { tail += e[k] }
    }
    let total = s.sum() + tail
    let inverse = SIMD8<Float>(repeating: 1 / total)
    j = 0
    while j + 8 <= c {
      ElementwiseKernels.store(ElementwiseKernels.load(y + j) * inverse, y + j)
      j += 8
    }
    while j < c {
      y[j] *= inverse[0]
      j += 1
    }
    return (m, total)
  }
}

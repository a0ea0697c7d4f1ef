/// A float vector the activation kernels run on: `SIMD16<Float>` (one AVX-512 register or two AVX2 ones), or `SIMD8<Float>` in the portable build.
///
/// Arithmetic on a generic `SIMD` specializes to vector instructions, but comparisons, masks and integer
/// bit operations do not (the generic versions loop over the lanes, measured 4–5× slower GELU), so
/// the few of those the kernels need are requirements that each width implements on its concrete type.
package protocol ActivationVector: SIMD where Scalar == Float {
  /// Each lane limited to `[low, high]`.
  func clampedLanes(_ low: Float, _ high: Float) -> Self
  /// |lane| with the sign bit cleared, and the sign bits alone (as floats: ±0).
  var magnitudeAndSign: (magnitude: Self, sign: Self) { get }
  /// `self` with the sign bits of `sign` set (`sign` from ``magnitudeAndSign``).
  func orSign(_ sign: Self) -> Self
  /// 2ⁿ per lane, where `rounded` holds n in its low mantissa bits (`1.5·2²³ + n`, see ``ActivationKernels/exp(_:)``).
  static func powerOfTwo(_ rounded: Self) -> Self
}

extension SIMD8: ActivationVector where Scalar == Float {
  @inline(__always) package func clampedLanes(_ low: Float, _ high: Float) -> Self {
    let lower = Self(repeating: low), upper = Self(repeating: high)
    return replacing(with: lower, where: self .< lower).replacing(with: upper, where: self .> upper)
  }
  @inline(__always) package var magnitudeAndSign: (magnitude: Self, sign: Self) {
    let bits = unsafeBitCast(self, to: SIMD8<UInt32>.self)
    return (
      unsafeBitCast(bits & SIMD8<UInt32>(repeating: 0x7FFF_FFFF), to: Self.self),
      unsafeBitCast(bits & SIMD8<UInt32>(repeating: 0x8000_0000), to: Self.self)
    )
  }
  @inline(__always) package func orSign(_ sign: Self) -> Self {
    unsafeBitCast(unsafeBitCast(self, to: SIMD8<UInt32>.self) | unsafeBitCast(sign, to: SIMD8<UInt32>.self), to: Self.self)
  }
  @inline(__always) package static func powerOfTwo(_ rounded: Self) -> Self {
    unsafeBitCast((unsafeBitCast(rounded, to: SIMD8<UInt32>.self) &<< 23) &+ SIMD8<UInt32>(repeating: 127 << 23), to: Self.self)
  }
}

extension SIMD16: ActivationVector where Scalar == Float {
  @inline(__always) package func clampedLanes(_ low: Float, _ high: Float) -> Self {
    let lower = Self(repeating: low), upper = Self(repeating: high)
    return replacing(with: lower, where: self .< lower).replacing(with: upper, where: self .> upper)
  }
  @inline(__always) package var magnitudeAndSign: (magnitude: Self, sign: Self) {
    let bits = unsafeBitCast(self, to: SIMD16<UInt32>.self)
    return (
      unsafeBitCast(bits & SIMD16<UInt32>(repeating: 0x7FFF_FFFF), to: Self.self),
      unsafeBitCast(bits & SIMD16<UInt32>(repeating: 0x8000_0000), to: Self.self)
    )
  }
  @inline(__always) package func orSign(_ sign: Self) -> Self {
    unsafeBitCast(unsafeBitCast(self, to: SIMD16<UInt32>.self) | unsafeBitCast(sign, to: SIMD16<UInt32>.self), to: Self.self)
  }
  @inline(__always) package static func powerOfTwo(_ rounded: Self) -> Self {
    unsafeBitCast((unsafeBitCast(rounded, to: SIMD16<UInt32>.self) &<< 23) &+ SIMD16<UInt32>(repeating: 127 << 23), to: Self.self)
  }
}

package enum ActivationKernels {
  /// e^x, accurate to about 2 ulp for x in [-87.3, 88.3]; inputs outside are clamped
  /// (so the result never overflows to infinity or underflows to a denormal).
  ///
  /// Cephes' `expf`: x = n·ln2 + r with |r| ≤ ln2/2, e^r = 1 + r + r²·P(r) with a degree-5 P,
  /// and 2ⁿ assembled directly in the exponent bits.
  @inline(__always)
  static func exp<V: ActivationVector>(_ x: V) -> V {
    // Compare-and-select rather than `clamped(lowerBound:upperBound:)`, which is not inlined
    // (it becomes two library calls per vector).
    let clamped = x.clampedLanes(-87.3, 88.3)
    // Adding 1.5·2²³ rounds to the nearest integer and leaves it in the low mantissa bits.
    let magic = V(repeating: 12_582_912)
    let t = magic.addingProduct(clamped, V(repeating: 1.442_695_040_888_963_4))
    let n = t - magic
    // Two-part ln2 (the first part has few mantissa bits, so n·ln2_hi is exact) keeps r accurate.
    var r = clamped.addingProduct(n, V(repeating: -0.693_359_375))
    r = r.addingProduct(n, V(repeating: 2.121_944_4e-4))
    var p = V(repeating: 1.398_199_950_7e-3).addingProduct(V(repeating: 1.987_569_150_0e-4), r)
    p = V(repeating: 8.333_451_907_3e-3).addingProduct(p, r)
    p = V(repeating: 4.166_579_589_4e-2).addingProduct(p, r)
    p = V(repeating: 1.666_666_545_9e-1).addingProduct(p, r)
    p = V(repeating: 5.000_000_120_1e-1).addingProduct(p, r)
    let er = (r + 1).addingProduct(p, r * r)
    // n sits in the low bits of t; shifting them into the exponent field and adding the
    // bias gives the bit pattern of 2ⁿ (the high bits of the magic constant shift out).
    return er * V.powerOfTwo(t)
  }

  /// erf(z) and e^(−z²) together (GELU's forward and backward need both).
  ///
  /// Abramowitz & Stegun 7.1.26: erf(|z|) = 1 − t·(a₁ + t(a₂ + t(a₃ + t(a₄ + t·a₅))))·e^(−z²) with
  /// t = 1/(1 + p|z|); absolute error ≤ 1.5·10⁻⁷ (plus Float rounding, < 5·10⁻⁷ in total).
  @inline(__always)
  static func erfAndGaussian<V: ActivationVector>(_ z: V) -> (erf: V, gaussian: V) {
    let (a, sign) = z.magnitudeAndSign
    let t = 1 / V(repeating: 1).addingProduct(a, V(repeating: 0.327_591_1))
    var poly = V(repeating: -1.453_152_027).addingProduct(V(repeating: 1.061_405_429), t)
    poly = V(repeating: 1.421_413_741).addingProduct(poly, t)
    poly = V(repeating: -0.284_496_736).addingProduct(poly, t)
    poly = V(repeating: 0.254_829_592).addingProduct(poly, t)
    poly *= t
    let gaussian = exp(-(a * a))
    let magnitude = 1 - poly * gaussian
    let erf = magnitude.orSign(sign)
    return (erf, gaussian)
  }

  static let inverseSquareRootOf2: Float = 0.707_106_781_186_547_5
  static let inverseSquareRootOf2Pi: Float = 0.398_942_280_401_432_7

  /// erf(x) as a rational function on [−4, 4] (Eigen's `generic_fast_erf_float`): x·P(x²)/Q(x²)
  /// with P of degree 6 and Q of degree 4; outside ±4, erf is ±1 to Float precision.
  /// Absolute error < 3·10⁻⁷. It needs no exponential, so the GELU forward pass uses it
  /// (measured 1.7× faster than ``erfAndGaussian(_:)``), while backward, which needs e^(−z²)
  /// anyway, uses the latter.
  @inline(__always)
  package static func erf<V: ActivationVector>(_ z: V) -> V {
    let x = z.clampedLanes(-4, 4)
    let x2 = x * x
    var p = V(repeating: 2.770_681_424_959_02e-08).addingProduct(x2, V(repeating: -2.726_142_258_013_06e-10))
    p = V(repeating: -2.101_024_020_825_08e-06).addingProduct(x2, p)
    p = V(repeating: -5.692_506_394_623_46e-05).addingProduct(x2, p)
    p = V(repeating: -7.349_906_303_268_55e-04).addingProduct(x2, p)
    p = V(repeating: -2.954_599_808_540_25e-03).addingProduct(x2, p)
    p = V(repeating: -1.609_603_332_624_15e-02).addingProduct(x2, p)
    var q = V(repeating: -2.133_740_552_789_05e-04).addingProduct(x2, V(repeating: -1.456_607_184_649_96e-05))
    q = V(repeating: -1.682_826_974_382_03e-03).addingProduct(x2, q)
    q = V(repeating: -7.373_329_167_204_68e-03).addingProduct(x2, q)
    q = V(repeating: -1.426_473_905_141_89e-02).addingProduct(x2, q)
    return x * p / q
  }

  /// GELU(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)).
  @inline(__always)
  package static func gelu<V: ActivationVector>(_ x: V) -> V {
    0.5 * x * (1 + erf(x * inverseSquareRootOf2))
  }

  /// GELU′(x) = Φ(x) + x·φ(x) with φ(x) = e^(−x²/2)/√(2π).
  @inline(__always)
  static func geluDerivative<V: ActivationVector>(_ x: V) -> V {
    geluAndDerivative(x).derivative
  }

  /// GELU(x) = x·Φ(x) and GELU′(x) from one erf and one exponential (the backward passes' erf, with its
  /// e^(−x²), not the forward pass's rational one), so a pass that needs both evaluates them once.
  @inline(__always)
  static func geluAndDerivative<V: ActivationVector>(_ x: V) -> (gelu: V, derivative: V) {
    let (erf, gaussian) = erfAndGaussian(x * inverseSquareRootOf2)
    let cdf = 0.5 * (1 + erf)
    return (x * cdf, cdf.addingProduct(x * gaussian, V(repeating: inverseSquareRootOf2Pi)))
  }

  /// Loads `count` < 8 elements into the low lanes (the rest are 0).
  @inline(__always)
  static func loadPartial(_ pointer: UnsafePointer<Float>, count: Int) -> SIMD8<Float> {
    Lanes<SIMD8<Float>>.loadPartial(pointer, count: count)
  }

  /// Stores the low `count` < 8 lanes.
  @inline(__always)
  static func storePartial(_ value: SIMD8<Float>, _ pointer: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { pointer[i] = value[i] }
  }

  // MARK: GELU loops, 8 or 16 lanes

  /// Whether the GELU loops run 16 lanes at a time: in every build that targets the machine's vector
  /// extensions (not the portable one, where a 16-lane vector is four SSE registers and would spill).
  /// Every lane computes the same operations at either width, so the results are the same bits.
  ///
  /// With AVX-512, 16 lanes halve the instructions of the erf and exponential polynomials, which are most
  /// of a GELU (measured on an Intel Xeon with two 512-bit FMA ports: see the README's Stop 13). With AVX2
  /// a 16-lane vector is two ymm registers, and every operation on it becomes two independent
  /// instructions side by side: two elements' chains of an erf, an exponential and a division in flight
  /// at once instead of one, where one 8-lane chain left the FMA units waiting on its latencies. Measured on
  /// Zen 3 (one thread, 180 × 80 floats in L2, both widths alternated 40 times in one process, 10 runs):
  /// the backward pass's GELU with its activation 1.17–1.53 → 0.98–1.23 ns per element (1.19–1.24× in
  /// every run), the forward 0.54–0.65 → 0.46–0.55 (1.15–1.19×); the 28² residual MLPs' passes mostly
  /// 1–6% faster, quadranet-28's training step +2.0% (README, Stop 27).
  static let widensGELU: Bool = {
    #if QUADRANET_PORTABLE
      return false
    #else
      return true
    #endif
  }()

  /// Forces the GELU loops' width inside a task (tests compare both widths on any machine).
  @TaskLocal static var wideOverride: Bool?

  /// `y[r, j] = GELU(x[r, j] + bias[j])` over `rows` rows of `columns` (`GELU(x)` without a bias; then
  /// any split of the elements into rows gives the same values). `y` may be `x`.
  ///
  /// Other modules (the inference engine) call this loop, not the generic vector functions: a generic
  /// called across modules ran unspecialized (lane by lane through witness tables), measured 100× slower.
  package static func gelu(
    _ x: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, rows: Int, columns: Int
  ) {
    if wideOverride ?? widensGELU {
      Lanes<SIMD16<Float>>.gelu(x, bias: bias, y, rows: rows, columns: columns)
    } else {
      Lanes<SIMD8<Float>>.gelu(x, bias: bias, y, rows: rows, columns: columns)
    }
  }

  /// `d[r, j] = g[r, j] · GELU′(x[r, j] + bias[j])` (`d` may be `g`), adding each row's `d` to
  /// `biasSums` when given.
  static func geluBackward(
    _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ d: UnsafeMutablePointer<Float>,
    rows: Int, columns: Int, biasSums: UnsafeMutablePointer<Float>? = nil
  ) {
    if wideOverride ?? widensGELU {
      Lanes<SIMD16<Float>>.geluBackward(g, x, bias: bias, d, rows: rows, columns: columns, biasSums: biasSums)
    } else {
      Lanes<SIMD8<Float>>.geluBackward(g, x, bias: bias, d, rows: rows, columns: columns, biasSums: biasSums)
    }
  }

  /// The residual MLP's backward pass through its GELU, for `rows` rows of `columns`: `activated = GELU(x)`,
  /// `gradient ← gradient ⊙ GELU′(x)` in place (∂GELU(h) in, ∂h out) and each row's ∂h added to `biasSums`,
  /// in one pass from one erf and one exponential per element (the forward pass's faster erf has no
  /// exponential, but GELU′ needs e^(−x²/2) anyway). Separate passes for GELU and GELU′, the product and the
  /// row sums wrote GELU′ out and read it and ∂h back: quadranet-28's training step (batch 64, one thread,
  /// Zen 4) went 1051 → 1061 img/s with this pass (paired runs, mean of the best of 6).
  static func geluBackwardWithActivation(
    _ x: UnsafePointer<Float>, gradient: UnsafeMutablePointer<Float>, activated: UnsafeMutablePointer<Float>,
    biasSums: UnsafeMutablePointer<Float>, rows: Int, columns: Int
  ) {
    if wideOverride ?? widensGELU {
      Lanes<SIMD16<Float>>.geluBackwardWithActivation(
        x, gradient: gradient, activated: activated, biasSums: biasSums, rows: rows, columns: columns)
    } else {
      Lanes<SIMD8<Float>>.geluBackwardWithActivation(
        x, gradient: gradient, activated: activated, biasSums: biasSums, rows: rows, columns: columns)
    }
  }

  /// The GELU loops at one vector width `V`.
  enum Lanes<V: ActivationVector> {
    @inline(__always) static var width: Int { V.scalarCount }

    @inline(__always) static func load(_ pointer: UnsafePointer<Float>) -> V {
      UnsafeRawPointer(pointer).loadUnaligned(as: V.self)
    }

    @inline(__always) static func store(_ value: V, _ pointer: UnsafeMutablePointer<Float>) {
      UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: V.self)
    }

    /// Loads `count` < `width` elements into the low lanes (the rest are 0).
    @inline(__always) static func loadPartial(_ pointer: UnsafePointer<Float>, count: Int) -> V {
      var v = V()
      for i in 0..<count { v[i] = pointer[i] }
      return v
    }

    @inline(__always) static func storePartial(_ value: V, _ pointer: UnsafeMutablePointer<Float>, count: Int) {
      for i in 0..<count { pointer[i] = value[i] }
    }

    /// `x + bias` for the `count` (≤ `width`) elements at column `j` of a row.
    @inline(__always)
    static func biased(_ xr: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ j: Int, count: Int) -> V {
      if count == width { return bias.map { load(xr + j) + load($0 + j) } ?? load(xr + j) }
      let v = loadPartial(xr + j, count: count)
      return bias.map { v + loadPartial($0 + j, count: count) } ?? v
    }

    static func gelu(
      _ x: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>, rows: Int, columns c: Int
    ) {
      for row in 0..<rows {
        let xr = x + row * c, yr = y + row * c
        var j = 0
        while j + width <= c {
          store(ActivationKernels.gelu(biased(xr, bias, j, count: width)), yr + j)
          j += width
        }
        if j < c { storePartial(ActivationKernels.gelu(biased(xr, bias, j, count: c - j)), yr + j, count: c - j) }
      }
    }

    static func geluBackward(
      _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ d: UnsafeMutablePointer<Float>,
      rows: Int, columns c: Int, biasSums: UnsafeMutablePointer<Float>?
    ) {
      for row in 0..<rows {
        let xr = x + row * c, gr = g + row * c, dr = d + row * c
        var j = 0
        while j + width <= c {
          let dv = load(gr + j) * geluDerivative(biased(xr, bias, j, count: width))
          store(dv, dr + j)
          if let biasSums { store(load(biasSums + j) + dv, biasSums + j) }
          j += width
        }
        if j < c {
          let n = c - j
          let dv = loadPartial(gr + j, count: n) * geluDerivative(biased(xr, bias, j, count: n))
          storePartial(dv, dr + j, count: n)
          if let biasSums { for k in 0..<n { biasSums[j + k] += dv[k] } }
        }
      }
    }

    static func geluBackwardWithActivation(
      _ x: UnsafePointer<Float>, gradient: UnsafeMutablePointer<Float>, activated: UnsafeMutablePointer<Float>,
      biasSums: UnsafeMutablePointer<Float>, rows: Int, columns c: Int
    ) {
      for row in 0..<rows {
        let xr = x + row * c, gr = gradient + row * c, ar = activated + row * c
        var j = 0
        while j + width <= c {
          let (a, d) = geluAndDerivative(load(xr + j))
          store(a, ar + j)
          let dh = load(gr + j) * d
          store(dh, gr + j)
          store(load(biasSums + j) + dh, biasSums + j)
          j += width
        }
        if j < c {
          let n = c - j
          let (a, d) = geluAndDerivative(loadPartial(xr + j, count: n))
          storePartial(a, ar + j, count: n)
          let dh = loadPartial(gr + j, count: n) * d
          storePartial(dh, gr + j, count: n)
          for k in 0..<n { biasSums[j + k] += dh[k] }
        }
      }
    }
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

import QuadraCore

/// The engine's own fused row kernels (LayerNorm statistics, GELU, gating products), each on a
/// range of contiguous NHWC rows so a plan step can run them on a chunk that is still in cache.
///
/// They are serial on purpose: the steps decide how rows are split over threads
/// (``InferencePlan/forEachRowChunk(rows:chunkRows:workspace:_:)``).
enum InferenceKernels {
  typealias Vector = SIMD8<Float>
  static let lanes = 8

  @inline(__always) static func load(_ pointer: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(pointer).loadUnaligned(as: Vector.self)
  }

  @inline(__always) static func store(_ value: Vector, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: Vector.self)
  }

  // MARK: LayerNorm

  /// Mean μ and 1/√(σ² + ε) of one row of `count` values, with the variance from a second pass over
  /// `x − μ` (the row is in L1, and this avoids the cancellation of the Σx² − nμ² formula).
  @inline(__always)
  static func statistics(_ x: UnsafePointer<Float>, count: Int, epsilon: Float) -> (mean: Float, inverseDeviation: Float) {
    var sum = Vector()
    var j = 0
    while j + lanes <= count {
      sum += load(x + j)
      j += lanes
    }
    var tail: Float = 0
    while j < count {
      tail += x[j]
      j += 1
    }
    let mean = (sum.sum() + tail) / Float(count)
    let meanVector = Vector(repeating: mean)
    var squares = Vector()
    j = 0
    while j + lanes <= count {
      let d = load(x + j) - meanVector
      squares = squares.addingProduct(d, d)
      j += lanes
    }
    var squareTail: Float = 0
    while j < count {
      let d = x[j] - mean
      squareTail += d * d
      j += 1
    }
    let variance = (squares.sum() + squareTail) / Float(count)
    return (mean, 1 / (variance + epsilon).squareRoot())
  }

  /// `y = (x − μ)/√(σ² + ε)` over one row of `c` values, times `weight` plus `bias` when given (nil: the
  /// affine part was folded into the next linear map). `y` may equal `x`.
  @inline(__always)
  static func normalizeRow(
    _ xr: UnsafePointer<Float>, into yr: UnsafeMutablePointer<Float>, columns c: Int, epsilon: Float,
    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?
  ) {
    let (mean, inverse) = statistics(xr, count: c, epsilon: epsilon)
    let m = Vector(repeating: mean), s = Vector(repeating: inverse)
    var j = 0
    if let weight, let bias {
      while j + lanes <= c {
        store(load(bias + j).addingProduct((load(xr + j) - m) * s, load(weight + j)), yr + j)
        j += lanes
      }
      while j < c {
        yr[j] = (xr[j] - mean) * inverse * weight[j] + bias[j]
        j += 1
      }
    } else {
      while j + lanes <= c {
        store((load(xr + j) - m) * s, yr + j)
        j += lanes
      }
      while j < c {
        yr[j] = (xr[j] - mean) * inverse
        j += 1
      }
    }
  }

  /// ``normalizeRow(_:into:columns:epsilon:weight:bias:)`` for the rows `rows` of `x` (row stride `c`),
  /// written to `y` from its first row on (row stride `c`).
  static func layerNorm(
    _ x: UnsafePointer<Float>, rows: Range<Int>, columns c: Int, epsilon: Float,
    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>
  ) {
    for (index, row) in rows.enumerated() {
      normalizeRow(x + row * c, into: y + index * c, columns: c, epsilon: epsilon, weight: weight, bias: bias)
    }
  }

  /// `x[row] += addend[row]` for the rows of `rows` (a residual connection), `c` columns each.
  static func add(_ addend: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, rows: Range<Int>, columns c: Int) {
    let start = rows.lowerBound * c, end = rows.upperBound * c
    var i = start
    while i + lanes <= end {
      store(load(x + i) + load(addend + i), x + i)
      i += lanes
    }
    while i < end {
      x[i] += addend[i]
      i += 1
    }
  }

  // MARK: Gating (gⁿConv)

  /// `c[r, j] = a[r, j] · b[r, j]` for `j < columns`, each operand with its own row stride.
  static func multiply(
    _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
    into c: UnsafeMutablePointer<Float>, ldc: Int, rows: Range<Int>, columns: Int
  ) {
    for row in rows {
      let ar = a + row * lda, br = b + row * ldb, cr = c + row * ldc
      var j = 0
      while j + lanes <= columns {
        store(load(ar + j) * load(br + j), cr + j)
        j += lanes
      }
      while j < columns {
        cr[j] = ar[j] * br[j]
        j += 1
      }
    }
  }

  // MARK: GELU

  /// GELU(x) = ½·x·(1 + erf(x/√2)) on `count` contiguous values, in place: the training kernels' loop
  /// (QuadraCore's `ActivationKernels`, erf as a rational function, 16 lanes on AVX-512), so the engine
  /// and the tape round alike.
  static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
    ActivationKernels.gelu(x, bias: nil, x, rows: 1, columns: count)
  }
}

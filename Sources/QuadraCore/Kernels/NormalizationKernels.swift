/// LayerNorm over contiguous rows (the channel axis of NHWC tensors).
enum NormalizationKernels {
  /// Forward: per row, mean μ and inverse standard deviation σ⁻¹ = 1/√(var + ε), then
  /// `y = (x − μ)·σ⁻¹·γ + β`.
  ///
  /// The statistics come from one pass of sums of `x − x₀` and `(x − x₀)²`, shifted by the
  /// row's first element: the shift removes the large common offset that makes the plain
  /// sum-of-squares formula cancel catastrophically, and the totals are folded into Double.
  static func layerNormForward(
    _ x: UnsafePointer<Float>, rows: Int, columns c: Int,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float,
    output y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
    inverseStandardDeviation rstd: UnsafeMutablePointer<Float>
  ) {
    Parallel.forRanges(rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(c, 1))) {
      range in
      for row in range {
        (mean[row], rstd[row]) = layerNormRow(
          x + row * c, columns: c, weight: weight, bias: bias, epsilon: epsilon, output: y + row * c)
      }
    }
  }

  /// Only the statistics of ``layerNormForward(_:rows:columns:weight:bias:epsilon:output:mean:inverseStandardDeviation:)``
  /// (for kernels that normalize rows as they read them): one streaming pass over `x` whose rows' dependency
  /// chains (sums, division, square root) overlap across the loop.
  static func layerNormStatistics(
    _ x: UnsafePointer<Float>, rows: Int, columns c: Int, epsilon: Float, mean: UnsafeMutablePointer<Float>,
    inverseStandardDeviation rstd: UnsafeMutablePointer<Float>
  ) {
    Parallel.forRanges(rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(c, 1))) {
      range in
      for row in range { (mean[row], rstd[row]) = statistics(x + row * c, columns: c, epsilon: epsilon) }
    }
  }

  /// One row of ``layerNormForward(_:rows:columns:weight:bias:epsilon:output:mean:inverseStandardDeviation:)``:
  /// writes the normalized row to `yr` and returns its mean and inverse standard deviation.
  @inline(__always)
  static func layerNormRow(
    _ xr: UnsafePointer<Float>, columns c: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    epsilon: Float, output yr: UnsafeMutablePointer<Float>
  ) -> (mean: Float, inverseStandardDeviation: Float) {
    let (mu, inv) = statistics(xr, columns: c, epsilon: epsilon)
    normalizeRow(xr, columns: c, weight: weight, bias: bias, mean: mu, inverseStandardDeviation: inv, output: yr)
    return (mu, inv)
  }

  /// One row's mean μ and inverse standard deviation 1/√(var + ε) (the biased variance), from
  /// sums shifted by the row's first element (see
  /// ``layerNormForward(_:rows:columns:weight:bias:epsilon:output:mean:inverseStandardDeviation:)``).
  /// Every LayerNorm of the engine, fused or not, takes its statistics from here, so they agree to the bit.
  @inline(__always)
  static func statistics(
    _ xr: UnsafePointer<Float>, columns c: Int, epsilon: Float
  ) -> (mean: Float, inverseStandardDeviation: Float) {
    let shift = xr[0]
    let shiftVector = SIMD8<Float>(repeating: shift)
    var s1 = SIMD8<Float>(), s2 = SIMD8<Float>()
    var j = 0
    while j + 8 <= c {
      let d = ElementwiseKernels.load(xr + j) - shiftVector
      s1 += d
      s2 = s2.addingProduct(d, d)
      j += 8
    }
    var t1: Float = 0, t2: Float = 0
    while j < c {
      let d = xr[j] - shift
      t1 += d
      t2 += d * d
      j += 1
    }
    let sum1 = Double(ElementwiseKernels.laneSum(s1)) + Double(t1)
    let sum2 = Double(ElementwiseKernels.laneSum(s2)) + Double(t2)
    let shiftedMean = sum1 / Double(c)
    let variance = Swift.max(sum2 / Double(c) - shiftedMean * shiftedMean, 0)
    return (Float(Double(shift) + shiftedMean), Float(1 / (variance + Double(epsilon)).squareRoot()))
  }

  /// `yr = (xr − μ)·σ⁻¹·γ + β` for one row whose statistics are known (forward, and the fused
  /// residual MLP's backward pass, which recomputes the normalized rows instead of keeping them).
  @inline(__always)
  static func normalizeRow(
    _ xr: UnsafePointer<Float>, columns c: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    mean mu: Float, inverseStandardDeviation inv: Float, output yr: UnsafeMutablePointer<Float>
  ) {
    let muVector = SIMD8<Float>(repeating: mu), invVector = SIMD8<Float>(repeating: inv)
    var j = 0
    while j + 8 <= c {
      let normalized = (ElementwiseKernels.load(xr + j) - muVector) * invVector
      ElementwiseKernels.store(
        ElementwiseKernels.load(bias + j).addingProduct(normalized, ElementwiseKernels.load(weight + j)), yr + j)
      j += 8
    }
    while j < c {
      yr[j] = (xr[j] - mu) * inv * weight[j] + bias[j]
      j += 1
    }
  }

  /// Backward. With x̂ = (x − μ)·σ⁻¹ and ĝ = g ⊙ γ, per row:
  /// `dx = σ⁻¹·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂))`; over all rows `dγ = Σ g ⊙ x̂`, `dβ = Σ g`.
  ///
  /// x̂ is recomputed from the saved μ and σ⁻¹ rather than stored. dγ and dβ are summed per
  /// chunk of rows into private partial rows and added at the end, so threads never share a write;
  /// the chunks depend on the shape only, so the sums are the same on any thread count.
  static func layerNormBackward(
    _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, columns c: Int,
    weight: UnsafePointer<Float>, mean: UnsafePointer<Float>, inverseStandardDeviation rstd: UnsafePointer<Float>,
    inputGradient dx: UnsafeMutablePointer<Float>, inputGradientAddend addend: UnsafePointer<Float>? = nil,
    weightGradient dWeight: UnsafeMutablePointer<Float>, biasGradient dBias: UnsafeMutablePointer<Float>
  ) {
    let chunks = ElementwiseKernels.reductionChunkCount(
      rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(c, 1)), partialSize: 2 * c)
    // Rows [0, 2c) of chunk k hold its dγ and dβ partials.
    let partials = Tensor(zeros: [chunks, 2, c])
    let partial = partials.buffer.pointer
    ElementwiseKernels.forChunks(rows, chunks: chunks) { chunk, range in
      let pw = partial + chunk * 2 * c
      let pb = pw + c
      for row in range {
        layerNormBackwardRow(
          g + row * c, x + row * c, columns: c, weight: weight, mean: mean[row], inverseStandardDeviation: rstd[row],
          inputGradient: dx + row * c, weightGradientSum: pw, biasGradientSum: pb,
          residualGradient: addend.map { $0 + row * c })
      }
    }
    dWeight.update(from: partial, count: c)
    dBias.update(from: partial + c, count: c)
    for chunk in 1..<Swift.max(chunks, 1) {
      ElementwiseKernels.accumulate(partial + chunk * 2 * c, into: dWeight, count: c)
      ElementwiseKernels.accumulate(partial + chunk * 2 * c + c, into: dBias, count: c)
    }
    // The partials were used only through `partial`; keep them alive until here.
    withExtendedLifetime(partials) {}
  }

  /// One row of ``layerNormBackward(_:_:rows:columns:weight:mean:inverseStandardDeviation:inputGradient:inputGradientAddend:weightGradient:biasGradient:)``:
  /// writes the row's `dx` (plus `residualGradient`, when given: the gradient of a residual branch
  /// that reads the same `x`, added here instead of in a separate pass) and adds `g ⊙ x̂` and `g`
  /// to the running sums `pw`, `pb`.
  @inline(__always)
  static func layerNormBackwardRow(
    _ gr: UnsafePointer<Float>, _ xr: UnsafePointer<Float>, columns c: Int, weight: UnsafePointer<Float>,
    mean mu: Float, inverseStandardDeviation inv: Float, inputGradient dxr: UnsafeMutablePointer<Float>,
    weightGradientSum pw: UnsafeMutablePointer<Float>, biasGradientSum pb: UnsafeMutablePointer<Float>,
    residualGradient: UnsafePointer<Float>? = nil
  ) {
    let inverseCount = 1 / Float(c)
    let muVector = SIMD8<Float>(repeating: mu), invVector = SIMD8<Float>(repeating: inv)
    var a1 = SIMD8<Float>(), a2 = SIMD8<Float>()
    var j = 0
    while j + 8 <= c {
      let xhat = (ElementwiseKernels.load(xr + j) - muVector) * invVector
      let gv = ElementwiseKernels.load(gr + j)
      let ghat = gv * ElementwiseKernels.load(weight + j)
      a1 += ghat
      a2 = a2.addingProduct(ghat, xhat)
      ElementwiseKernels.store(ElementwiseKernels.load(pw + j).addingProduct(gv, xhat), pw + j)
      ElementwiseKernels.store(ElementwiseKernels.load(pb + j) + gv, pb + j)
      j += 8
    }
    var t1: Float = 0, t2: Float = 0
    while j < c {
      let xhat = (xr[j] - mu) * inv
      let ghat = gr[j] * weight[j]
      t1 += ghat
      t2 += ghat * xhat
      pw[j] += gr[j] * xhat
      pb[j] += gr[j]
      j += 1
    }
    let meanG = (ElementwiseKernels.laneSum(a1) + t1) * inverseCount
    let meanGX = (ElementwiseKernels.laneSum(a2) + t2) * inverseCount
    let meanGVector = SIMD8<Float>(repeating: meanG), meanGXVector = SIMD8<Float>(repeating: meanGX)
    j = 0
    while j + 8 <= c {
      let xhat = (ElementwiseKernels.load(xr + j) - muVector) * invVector
      let ghat = ElementwiseKernels.load(gr + j) * ElementwiseKernels.load(weight + j)
      let centered = (ghat - meanGVector).addingProduct(-xhat, meanGXVector)
      var dxv = centered * invVector
      if let residualGradient { dxv += ElementwiseKernels.load(residualGradient + j) }
      ElementwiseKernels.store(dxv, dxr + j)
      j += 8
    }
    while j < c {
      let xhat = (xr[j] - mu) * inv
      dxr[j] = (gr[j] * weight[j] - meanG - xhat * meanGX) * inv + (residualGradient?[j] ?? 0)
      j += 1
    }
  }
}

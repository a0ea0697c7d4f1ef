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
      layerNormRows(
        x, rows: range, columns: c, weight: weight, bias: bias, epsilon: epsilon, output: y, mean: mean,
        inverseStandardDeviation: rstd)
    }
  }

  /// ``layerNormForward(_:rows:columns:weight:bias:epsilon:output:mean:inverseStandardDeviation:)`` on the rows
  /// `rows` of row-major `x` (row stride `c`), on the calling thread: statistics four rows at a time
  /// (``statistics(_:columns:epsilon:mean:inverseStandardDeviation:)``), then those rows normalized. Row `r`
  /// goes to `output + (r − outputRowOffset)·c` (a block's scratch holds rows from `outputRowOffset` on); its
  /// statistics to `mean[r]` and `rstd[r]`.
  @inline(__always)
  static func layerNormRows(
    _ x: UnsafePointer<Float>, rows: Range<Int>, columns c: Int, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>, epsilon: Float, output y: UnsafeMutablePointer<Float>,
    mean: UnsafeMutablePointer<Float>, inverseStandardDeviation rstd: UnsafeMutablePointer<Float>,
    outputRowOffset: Int = 0
  ) {
    var row = rows.lowerBound
    while row < rows.upperBound {
      let count = Swift.min(4, rows.upperBound - row)
      statistics(x, rows: row..<(row + count), columns: c, epsilon: epsilon, mean: mean, inverseStandardDeviation: rstd)
      for r in row..<(row + count) {
        normalizeRow(
          x + r * c, columns: c, weight: weight, bias: bias, mean: mean[r], inverseStandardDeviation: rstd[r],
          output: y + (r - outputRowOffset) * c)
      }
      row += count
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
      statistics(x, rows: range, columns: c, epsilon: epsilon, mean: mean, inverseStandardDeviation: rstd)
    }
  }

  /// The statistics of the rows `rows` of row-major `x` (row stride `c`) into `mean[r]` and `rstd[r]`, on the
  /// calling thread: four rows at a time (``statistics(_:columns:epsilon:mean:inverseStandardDeviation:)``), the
  /// last 0–3 one by one (the same bits either way).
  @inline(__always)
  static func statistics(
    _ x: UnsafePointer<Float>, rows: Range<Int>, columns c: Int, epsilon: Float, mean: UnsafeMutablePointer<Float>,
    inverseStandardDeviation rstd: UnsafeMutablePointer<Float>
  ) {
    var row = rows.lowerBound
    while row + 4 <= rows.upperBound {
      statistics(x + row * c, columns: c, epsilon: epsilon, mean: mean + row, inverseStandardDeviation: rstd + row)
      row += 4
    }
    while row < rows.upperBound {
      (mean[row], rstd[row]) = statistics(x + row * c, columns: c, epsilon: epsilon)
      row += 1
    }
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
    return finishStatistics(xr, from: j, columns: c, shift: shift, s1, s2, epsilon: epsilon)
  }

  /// ``statistics(_:columns:epsilon:)`` of four consecutive rows (row stride `c`), written to `mean[0..<4]` and
  /// `rstd[0..<4]`: the same operations per row, so the same bits, with the four rows' dependency chains (each
  /// row's sums are one chain of adds, 4 cycles a step) interleaved in one loop. Row by row, a row's chain of
  /// sums, horizontal sum, division and square root left the out-of-order core idle for most of it: measured
  /// on an Intel Xeon (one thread, 784 rows in L1/L2) 12, 17 and 27 ns per row at C = 40, 80 and 160. With
  /// four rows at once the LayerNorm op at quadranet-28's [64, 14, 14, 40] went 0.223 → 0.188–0.190 ms (`bench
  /// ops --ops layerNorm --threads 1`, two alternations); inside the fused residual MLP no change showed.
  @inline(__always)
  static func statistics(
    _ x: UnsafePointer<Float>, columns c: Int, epsilon: Float, mean: UnsafeMutablePointer<Float>,
    inverseStandardDeviation rstd: UnsafeMutablePointer<Float>
  ) {
    let x0 = x, x1 = x + c, x2 = x + 2 * c, x3 = x + 3 * c
    let shifts = (x0[0], x1[0], x2[0], x3[0])
    let v0 = SIMD8<Float>(repeating: shifts.0), v1 = SIMD8<Float>(repeating: shifts.1)
    let v2 = SIMD8<Float>(repeating: shifts.2), v3 = SIMD8<Float>(repeating: shifts.3)
    var a0 = SIMD8<Float>(), b0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b1 = SIMD8<Float>()
    var a2 = SIMD8<Float>(), b2 = SIMD8<Float>(), a3 = SIMD8<Float>(), b3 = SIMD8<Float>()
    var j = 0
    while j + 8 <= c {
      let d0 = ElementwiseKernels.load(x0 + j) - v0, d1 = ElementwiseKernels.load(x1 + j) - v1
      let d2 = ElementwiseKernels.load(x2 + j) - v2, d3 = ElementwiseKernels.load(x3 + j) - v3
      a0 += d0
      b0 = b0.addingProduct(d0, d0)
      a1 += d1
      b1 = b1.addingProduct(d1, d1)
      a2 += d2
      b2 = b2.addingProduct(d2, d2)
      a3 += d3
      b3 = b3.addingProduct(d3, d3)
      j += 8
    }
    (mean[0], rstd[0]) = finishStatistics(x0, from: j, columns: c, shift: shifts.0, a0, b0, epsilon: epsilon)
    (mean[1], rstd[1]) = finishStatistics(x1, from: j, columns: c, shift: shifts.1, a1, b1, epsilon: epsilon)
    (mean[2], rstd[2]) = finishStatistics(x2, from: j, columns: c, shift: shifts.2, a2, b2, epsilon: epsilon)
    (mean[3], rstd[3]) = finishStatistics(x3, from: j, columns: c, shift: shifts.3, a3, b3, epsilon: epsilon)
  }

  /// The end of a row's statistics, shared by the one-row and four-row versions (so they agree to the bit):
  /// the scalar tail from column `j`, the horizontal sums of the vector sums `s1` (Σ d) and `s2` (Σ d²), and
  /// μ and 1/√(var + ε) in double precision.
  @inline(__always)
  private static func finishStatistics(
    _ xr: UnsafePointer<Float>, from start: Int, columns c: Int, shift: Float, _ s1: SIMD8<Float>, _ s2: SIMD8<Float>,
    epsilon: Float
  ) -> (mean: Float, inverseStandardDeviation: Float) {
    var t1: Float = 0, t2: Float = 0
    var j = start
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

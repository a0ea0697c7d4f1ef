import Foundation

/// The production backend: host memory and the SIMD, multi-threaded kernels of `Kernels/`
/// (packed GEMM, ring-buffered depthwise convolutions, the fused quadratic mixer, …).
///
/// Threads: every kernel splits its work over `Parallel.threadCount` threads.
public struct CPUBackend: Backend {
  public let device: Device
  public var name: String { "cpu" }

  /// - Parameter device: a `.cpu` device.
  public init(device: Device = .cpu) {
    opPrecondition(device.kind == .cpu, "CPUBackend: device must be a cpu device, got \(device)")
    self.device = device
  }

  // MARK: Memory

  public func makeBuffer(count: Int) -> TensorBuffer { TensorBuffer(count: count, device: device) }

  public func copy(fromHost source: UnsafeBufferPointer<Float>, into destination: Tensor, at offset: Int) {
    guard let base = source.baseAddress, !source.isEmpty else { return }
    (destination.buffer.pointer + offset).update(from: base, count: source.count)
  }

  public func copy(_ source: Tensor, from offset: Int, toHost destination: UnsafeMutableBufferPointer<Float>) {
    guard let base = destination.baseAddress, !destination.isEmpty else { return }
    base.update(from: source.buffer.pointer + offset, count: destination.count)
  }

  public func fill(_ tensor: Tensor, with value: Float) {
    tensor.buffer.pointer.update(repeating: value, count: tensor.count)
  }

  public func copyBlock(
    from source: Tensor, _ sourceBlock: StridedBlock, into destination: Tensor, _ destinationBlock: StridedBlock,
    rows: Int, width: Int
  ) {
    let from = UnsafePointer(source.buffer.pointer + sourceBlock.offset)
    let to = destination.buffer.pointer + destinationBlock.offset
    if rows == 1 || (sourceBlock.rowStride == width && destinationBlock.rowStride == width) {
      Parallel.forRanges(rows * width, minimumChunk: ElementwiseKernels.parallelGrain * 4) { range in
        (to + range.lowerBound).update(from: from + range.lowerBound, count: range.count)
      }
      return
    }
    Parallel.forRanges(rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(width, 1))) {
      range in
      for row in range {
        (to + row * destinationBlock.rowStride).update(from: from + row * sourceBlock.rowStride, count: width)
      }
    }
  }

  public func gatherImages(
    from source: Tensor, indices: [Int], transforms: [ImageTransform]?, fill: Float, into output: Tensor
  ) {
    let h = source.shape[1], w = source.shape[2], c = source.shape[3]
    let sampleSize = h * w * c, rowSize = w * c
    let src = UnsafePointer(source.buffer.pointer), dst = output.buffer.pointer
    indices.withUnsafeBufferPointer { list in
      Parallel.forRanges(list.count, minimumChunk: Swift.max(1, 16_384 / Swift.max(sampleSize, 1))) { range in
        for b in range {
          let input = src + list[b] * sampleSize, out = dst + b * sampleSize
          guard let t = transforms?[b], t != .identity else {
            out.update(from: input, count: sampleSize)
            continue
          }
          for y in 0..<h {
            let sy = y + t.dy
            let outRow = out + y * rowSize
            guard sy >= 0 && sy < h else {
              outRow.update(repeating: fill, count: rowSize)
              continue
            }
            let inRow = input + sy * rowSize
            if !t.flip {
              // Columns x with 0 ≤ x + dx < w come from the input; the rest are padding.
              let lo = Swift.min(Swift.max(0, -t.dx), w)
              let hi = Swift.max(Swift.min(w, w - t.dx), lo)
              if lo > 0 { outRow.update(repeating: fill, count: lo * c) }
              if hi > lo { (outRow + lo * c).update(from: inRow + (lo + t.dx) * c, count: (hi - lo) * c) }
              if hi < w { (outRow + hi * c).update(repeating: fill, count: (w - hi) * c) }
            } else {
              // Source column w − 1 − x + dx is inside the image for x in [dx, w + dx).
              let lo = Swift.min(Swift.max(0, t.dx), w)
              let hi = Swift.max(Swift.min(w, w + t.dx), lo)
              if lo > 0 { outRow.update(repeating: fill, count: lo * c) }
              let mirror = inRow + (w - 1 + t.dx) * c  // source pixel of x is mirror − x·c
              if c == 1 {
                for x in lo..<hi { outRow[x] = mirror[-x] }
              } else {
                for x in lo..<hi {
                  for k in 0..<c { outRow[x * c + k] = mirror[k - x * c] }
                }
              }
              if hi < w { (outRow + hi * c).update(repeating: fill, count: (w - hi) * c) }
            }
          }
        }
      }
    }
  }

  // MARK: Linear algebra

  public func matrixMultiply(_ a: Tensor, _ b: Tensor, _ p: MatrixProduct, columnBias: Tensor?, into c: Tensor) {
    let lda = Swift.max(1, p.transposeA ? p.m : p.k), ldb = Swift.max(1, p.transposeB ? p.k : p.n)
    let a = UnsafePointer(a.buffer.pointer), b = UnsafePointer(b.buffer.pointer), c = c.buffer.pointer
    let bias = columnBias.map { UnsafePointer($0.buffer.pointer) }
    func product(_ index: Int, parallel: Bool) {
      GEMM.multiply(
        m: p.m, n: p.n, k: p.k,
        a: a + index * p.m * p.k, lda: lda, transposeA: p.transposeA,
        b: b + index * p.k * p.n, ldb: ldb, transposeB: p.transposeB,
        c: c + index * p.m * p.n, ldc: Swift.max(1, p.n), alpha: 1, beta: 0, columnBias: bias, parallel: parallel)
    }
    if let slices = CPUBackend.depthSlices(p) {
      CPUBackend.multiplyInDepthSlices(
        a, lda: lda, b, ldb: ldb, p, slices: slices, columnBias: bias, into: c)
      return
    }
    // Small products (e.g. attention maps) are too small to split across threads one by one, so
    // threads take whole batches; large ones run one after another, each using all threads.
    let work = p.m * p.n * p.k
    if p.batch > 1 && work < 1 << 21 {
      Parallel.forRanges(p.batch, minimumChunk: Swift.max(1, (1 << 18) / Swift.max(1, work))) { range in
        for index in range { product(index, parallel: false) }
      }
    } else {
      for index in 0..<p.batch { product(index, parallel: true) }
    }
  }

  // MARK: Elementwise and reductions

  public func binary(_ op: BinaryOperator, _ a: Tensor, _ b: Tensor, into output: Tensor) {
    let plan = BroadcastPlan(a.shape, b.shape, op: op.rawValue)
    let x = UnsafePointer(a.buffer.pointer), y = UnsafePointer(b.buffer.pointer), out = output.buffer.pointer
    switch op {
    case .add: ElementwiseKernels.binary(AddOperation.self, plan: plan, x, y, out)
    case .subtract: ElementwiseKernels.binary(SubtractOperation.self, plan: plan, x, y, out)
    case .multiply: ElementwiseKernels.binary(MultiplyOperation.self, plan: plan, x, y, out)
    case .second: ElementwiseKernels.binary(SecondOperation.self, plan: plan, x, y, out)
    }
  }

  public func sum(_ x: Tensor, keeping keep: [Bool], into output: Tensor) {
    // A matrix summed over its rows (bias gradients) has a faster register-blocked kernel.
    if x.rank == 2 && keep == [false, true] && x.shape[0] > 0 {
      CPUBackend.columnSums(x.buffer.pointer, rows: x.shape[0], columns: x.shape[1], into: output.buffer.pointer)
      return
    }
    ElementwiseKernels.reduceSum(x.buffer.pointer, shape: x.shape, keep: keep, into: output.buffer.pointer)
  }

  public func sumOfProducts(_ a: Tensor, _ b: Tensor, into output: Tensor) {
    let x = UnsafePointer(a.buffer.pointer), y = UnsafePointer(b.buffer.pointer)
    chunkedColumnSums(rows: output.count == 0 ? 0 : a.count / output.count, into: output) { range, c, out in
      for row in range {
        let xr = x + row * c, yr = y + row * c
        var j = 0
        while j + 8 <= c {
          ElementwiseKernels.store(
            ElementwiseKernels.load(out + j).addingProduct(ElementwiseKernels.load(xr + j), ElementwiseKernels.load(yr + j)),
            out + j)
          j += 8
        }
        while j < c {
          out[j] += xr[j] * yr[j]
          j += 1
        }
      }
    }
  }

  /// Per-column sums over `rows` rows of `output.count` columns: `body(rows, C, partial)` adds a chunk of
  /// rows into its zeroed partial sums, and the partials are added in chunk order (the chunks depend on
  /// the sizes only, so the result is the same bits on any thread count). A chunk holds at least `grain`
  /// elements (less for bodies that do more work per element).
  private func chunkedColumnSums(
    rows: Int, into output: Tensor, grain: Int = ElementwiseKernels.parallelGrain,
    _ body: (Range<Int>, Int, UnsafeMutablePointer<Float>) -> Void
  ) {
    let c = output.count
    guard rows > 0, c > 0 else {
      fill(output, with: 0)
      return
    }
    let chunks = ElementwiseKernels.reductionChunkCount(
      rows, minimumChunk: Swift.max(1, grain / c), partialSize: c)
    let result = output.buffer.pointer
    KernelScratch.with(count: chunks * c, zeroed: true) { partial in
      ElementwiseKernels.forChunks(rows, chunks: chunks) { chunk, range in body(range, c, partial + chunk * c) }
      result.update(from: partial, count: c)
      for chunk in 1..<chunks { ElementwiseKernels.accumulate(partial + chunk * c, into: result, count: c) }
    }
  }

  public func sumAll(_ x: Tensor) -> Double { ElementwiseKernels.sumAll(x.buffer.pointer, count: x.count) }

  public func squaredSum(_ x: Tensor) -> Double { OptimizerKernels.sumOfSquares(x.buffer.pointer, count: x.count) }

  public func maxAbs(_ x: Tensor) -> Float {
    let base = UnsafePointer(x.buffer.pointer), n = x.count
    var m = SIMD8<Float>()
    var i = 0
    while i + 8 <= n {
      let v = ElementwiseKernels.load(base + i)
      // |v| by clearing the sign bit; max by compare-and-select (`pointwiseMax` is a library call).
      let a = unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt32>.self) & SIMD8(repeating: 0x7FFF_FFFF), to: SIMD8<Float>.self)
      m.replace(with: a, where: a .> m)
      i += 8
    }
    var result = m.max()
    while i < n {
      result = Swift.max(result, Swift.abs(base[i]))
      i += 1
    }
    return result
  }

  public func argmaxRows(_ x: Tensor) -> [Int] {
    let c = x.shape[x.rank - 1]
    let rows = x.count / c
    let base = UnsafePointer(x.buffer.pointer)
    return [Int](unsafeUninitializedCapacity: rows) { out, initialized in
      for row in 0..<rows {
        let xr = base + row * c
        var best = 0
        for j in 1..<c where xr[j] > xr[best] { best = j }
        out[row] = best
      }
      initialized = rows
    }
  }

  // MARK: Activations, normalization, loss

  public func gelu(_ x: Tensor, bias: Tensor?, into output: Tensor) {
    let source = UnsafePointer(x.buffer.pointer), y = output.buffer.pointer
    guard let bias else {
      Parallel.forRanges(x.count, minimumChunk: ElementwiseKernels.parallelGrain / 4) { range in
        let start = range.lowerBound
        ActivationKernels.gelu(source + start, bias: nil, y + start, rows: 1, columns: range.count)
      }
      return
    }
    let c = bias.count, rows = c == 0 ? 0 : x.count / c
    let b = UnsafePointer(bias.buffer.pointer)
    Parallel.forRanges(rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / 4 / c)) { range in
      let start = range.lowerBound * c
      ActivationKernels.gelu(source + start, bias: b, y + start, rows: range.count, columns: c)
    }
  }

  public func geluBackward(
    _ x: Tensor, bias: Tensor?, outputGradient: Tensor, inputGradient: Tensor, biasGradient: Tensor?
  ) {
    let source = UnsafePointer(x.buffer.pointer), g = UnsafePointer(outputGradient.buffer.pointer)
    let d = inputGradient.buffer.pointer
    guard let bias else {
      Parallel.forRanges(x.count, minimumChunk: ElementwiseKernels.parallelGrain / 4) { range in
        let start = range.lowerBound
        ActivationKernels.geluBackward(g + start, source + start, bias: nil, d + start, rows: 1, columns: range.count)
      }
      if let biasGradient { sum(inputGradient.reshaped([-1, biasGradient.count]), keeping: [false, true], into: biasGradient) }
      return
    }
    let c = bias.count, rows = c == 0 ? 0 : x.count / c
    let b = UnsafePointer(bias.buffer.pointer)
    let chunks = ElementwiseKernels.reductionChunkCount(
      rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / 4 / c), partialSize: c)
    KernelScratch.with(count: chunks * c, zeroed: true) { partial in
      ElementwiseKernels.forChunks(rows, chunks: chunks) { chunk, range in
        let start = range.lowerBound * c
        ActivationKernels.geluBackward(
          g + start, source + start, bias: b, d + start, rows: range.count, columns: c, biasSums: partial + chunk * c)
      }
      guard let biasGradient else { return }
      let result = biasGradient.buffer.pointer
      result.update(from: partial, count: c)
      for chunk in 1..<chunks { ElementwiseKernels.accumulate(partial + chunk * c, into: result, count: c) }
    }
  }

  /// One pass over `x` (one erf and one exponential per element), in chunks of rows whose bias-gradient partial
  /// sums are added in chunk order (the same bits on any thread count), where the default recomputes GELU in one
  /// pass and reads `x` again for GELU′ and the gradient again for its column sums. Measured on an Intel Xeon
  /// (`bench ops --ops residualMLP --variant 'x[16,14'`: quadranet-t's third stage, which does not fuse), its
  /// backward pass 60.2–60.5 → 57.2–57.7 ms on one thread, 31.9–32.3 → 30.5–30.6 ms on two.
  public func geluBackwardWithActivation(_ x: Tensor, gradient: Tensor, activated: Tensor, biasGradient: Tensor) {
    let c = biasGradient.count, rows = c == 0 ? 0 : x.count / c
    let source = UnsafePointer(x.buffer.pointer), g = gradient.buffer.pointer, a = activated.buffer.pointer
    chunkedColumnSums(rows: rows, into: biasGradient, grain: ElementwiseKernels.parallelGrain / 4) { range, c, partial in
      let start = range.lowerBound * c
      ActivationKernels.geluBackwardWithActivation(
        source + start, gradient: g + start, activated: a + start, biasSums: partial, rows: range.count, columns: c)
    }
  }

  public func softmax(_ x: Tensor, into output: Tensor) {
    let c = x.shape[x.rank - 1]
    let source = UnsafePointer(x.buffer.pointer), y = output.buffer.pointer
    Parallel.forRanges(x.count / c, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / 4 / c)) { range in
      for row in range { _ = SoftmaxRow.compute(source + row * c, y + row * c, count: c) }
    }
  }

  public func softmaxCrossEntropy(_ logits: Tensor, labels: [Int], labelSmoothing: Float, probabilities: Tensor) -> Double {
    let (b, k) = (logits.shape[0], logits.shape[1])
    let z = UnsafePointer(logits.buffer.pointer), p = probabilities.buffer.pointer
    let offTarget = Double(labelSmoothing) / Double(k)
    let onTarget = 1 - Double(labelSmoothing)
    return withUnsafeTemporaryAllocation(of: Double.self, capacity: Swift.max(b, 1)) { rowLosses in
      labels.withUnsafeBufferPointer { labels in
        Parallel.forRanges(b, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / 4 / k)) { range in
          for row in range {
            let zr = z + row * k
            let (m, s) = SoftmaxRow.compute(zr, p + row * k, count: k)
            let logSumExp = Double(m) + Foundation.log(Double(s))
            var zSum = 0.0
            for j in 0..<k { zSum += Double(zr[j]) }
            rowLosses[row] = logSumExp - offTarget * zSum - onTarget * Double(zr[labels[row]])
          }
        }
      }
      var total = 0.0
      for row in 0..<b { total += rowLosses[row] }
      return total / Double(Swift.max(b, 1))
    }
  }

  public func softmaxCrossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing: Float, scale: Float, into gradient: Tensor
  ) {
    let k = probabilities.shape[1]
    let offTarget = labelSmoothing / Float(k)
    let onTarget = 1 - labelSmoothing
    let p = UnsafePointer(probabilities.buffer.pointer), g = gradient.buffer.pointer
    for (row, label) in labels.enumerated() {
      for j in 0..<k {
        let target = offTarget + (j == label ? onTarget : 0)
        g[row * k + j] = (p[row * k + j] - target) * scale
      }
    }
  }

  public func layerNorm(
    _ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float, into output: Tensor, mean: Tensor,
    inverseStandardDeviation: Tensor
  ) {
    let c = weight.count
    NormalizationKernels.layerNormForward(
      x.buffer.pointer, rows: x.count / c, columns: c, weight: weight.buffer.pointer, bias: bias.buffer.pointer,
      epsilon: epsilon, output: output.buffer.pointer, mean: mean.buffer.pointer,
      inverseStandardDeviation: inverseStandardDeviation.buffer.pointer)
  }

  public func layerNormBackward(
    _ x: Tensor, outputGradient: Tensor, weight: Tensor, mean: Tensor, inverseStandardDeviation: Tensor,
    inputGradient: Tensor, inputGradientAddend: Tensor?, weightGradient: Tensor, biasGradient: Tensor
  ) {
    let c = weight.count
    NormalizationKernels.layerNormBackward(
      outputGradient.buffer.pointer, x.buffer.pointer, rows: x.count / c, columns: c, weight: weight.buffer.pointer,
      mean: mean.buffer.pointer, inverseStandardDeviation: inverseStandardDeviation.buffer.pointer,
      inputGradient: inputGradient.buffer.pointer,
      inputGradientAddend: inputGradientAddend.map { UnsafePointer($0.buffer.pointer) },
      weightGradient: weightGradient.buffer.pointer, biasGradient: biasGradient.buffer.pointer)
  }

  public func layerScaleResidual(_ x: Tensor, branch m: Tensor, scale: Tensor, into output: Tensor) {
    let c = scale.count
    let rows = c == 0 ? 0 : x.count / c
    let xp = UnsafePointer(x.buffer.pointer), mp = UnsafePointer(m.buffer.pointer)
    let gamma = UnsafePointer(scale.buffer.pointer), y = output.buffer.pointer
    Parallel.forRanges(rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(c, 1))) { range in
      let offset = range.lowerBound * c
      ElementwiseKernels.scaledAdd(
        xp + offset, mp + offset, scale: gamma, rows: range.count, columns: c, into: y + offset)
    }
  }

  public func layerScaleResidualBackward(
    branch m: Tensor, scale: Tensor, outputGradient: Tensor, branchGradient: Tensor, scaleGradient: Tensor
  ) {
    let mp = UnsafePointer(m.buffer.pointer), gamma = UnsafePointer(scale.buffer.pointer)
    let dy = UnsafePointer(outputGradient.buffer.pointer), dm = branchGradient.buffer.pointer
    chunkedColumnSums(rows: scale.count == 0 ? 0 : m.count / scale.count, into: scaleGradient) { range, c, partial in
      let offset = range.lowerBound * c
      ElementwiseKernels.scaledAddBackward(
        mp + offset, scale: gamma, outputGradient: dy + offset, rows: range.count, columns: c,
        branchGradient: dm + offset, scaleGradientSum: partial)
    }
  }

  public func residualMLP(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, into output: Tensor, saved: ResidualMLPSaved
  ) {
    let c = parameters.scale.count
    let shape = ResidualMLPKernels.Shape(rows: x.count / c, channels: c, hidden: parameters.expandBias.count)
    guard shape.fuses else {
      composedResidualMLP(x, parameters: parameters, epsilon: epsilon, into: output, saved: saved)
      return
    }
    ResidualMLPKernels.forward(
      x.buffer.pointer, parameters: .init(parameters), epsilon: epsilon, shape: shape, output: output.buffer.pointer,
      hidden: saved.hidden.buffer.pointer, mlpOutput: saved.mlpOutput.buffer.pointer, mean: saved.mean.buffer.pointer,
      inverseStandardDeviation: saved.inverseStandardDeviation.buffer.pointer)
  }

  public func residualMLPBackward(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, saved: ResidualMLPSaved, outputGradient: Tensor,
    inputGradient: Tensor, gradients: ResidualMLPParameters
  ) {
    let c = parameters.scale.count
    let shape = ResidualMLPKernels.Shape(rows: x.count / c, channels: c, hidden: parameters.expandBias.count)
    guard shape.fuses else {
      composedResidualMLPBackward(
        x, parameters: parameters, epsilon: epsilon, saved: saved, outputGradient: outputGradient, inputGradient: inputGradient,
        gradients: gradients)
      return
    }
    ResidualMLPKernels.backward(
      x.buffer.pointer, parameters: .init(parameters), shape: shape, hidden: saved.hidden.buffer.pointer,
      mlpOutput: saved.mlpOutput.buffer.pointer, mean: saved.mean.buffer.pointer,
      inverseStandardDeviation: saved.inverseStandardDeviation.buffer.pointer,
      outputGradient: outputGradient.buffer.pointer, inputGradient: inputGradient.buffer.pointer,
      gradients: .init(gradients))
  }

  // MARK: Convolutions

  public func depthwiseConvolution(_ x: Tensor, weight: Tensor, bias: Tensor?, into output: Tensor) {
    DepthwiseConvolution.forward(
      input: x.buffer.pointer, weight: weight.buffer.pointer, bias: bias.map { UnsafePointer($0.buffer.pointer) },
      output: output.buffer.pointer, batch: x.shape[0], height: x.shape[1], width: x.shape[2], channels: x.shape[3],
      kernelSize: weight.shape[0])
  }

  public func depthwiseConvolutionBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, inputGradient: Tensor?, weightGradient: Tensor,
    biasGradient: Tensor?
  ) {
    let (n, h, w, c, k) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], weight.shape[0])
    DepthwiseConvolution.backward(
      input: x.buffer.pointer, weight: weight.buffer.pointer, outputGradient: outputGradient.buffer.pointer,
      inputGradient: inputGradient?.buffer.pointer, weightGradient: weightGradient.buffer.pointer,
      biasGradient: biasGradient?.buffer.pointer, batch: n, height: h, width: w, channels: c, kernelSize: k)
  }

  public func quadraticDepthwiseConvolution(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, into output: Tensor
  ) {
    QuadraticDepthwiseConvolution.forward(
      input: x.buffer.pointer, weights: CPUBackend.pointers(weights), biases: biases.map(CPUBackend.pointers),
      output: output.buffer.pointer, batch: x.shape[0], height: x.shape[1], width: x.shape[2], channels: x.shape[3],
      kernelSize: weights.0.shape[0])
  }

  public func quadraticDepthwiseConvolutionBackward(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor?,
    weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    QuadraticDepthwiseConvolution.backward(
      input: x.buffer.pointer, weights: CPUBackend.pointers(weights), biases: biases.map(CPUBackend.pointers),
      outputGradient: outputGradient.buffer.pointer, inputGradient: inputGradient?.buffer.pointer,
      weightGradients: CPUBackend.mutablePointers(weightGradients),
      biasGradients: biasGradients.map(CPUBackend.mutablePointers),
      batch: x.shape[0], height: x.shape[1], width: x.shape[2], channels: x.shape[3], kernelSize: weights.0.shape[0])
  }

  public func normalizedQuadraticDepthwiseConvolution(
    _ x: Tensor, normalization: LayerNormParameters, weights: TensorTriple, biases: TensorTriple?, into output: Tensor,
    statistics: LayerNormStatistics
  ) {
    QuadraticDepthwiseConvolution.forward(
      input: x.buffer.pointer, normalization: CPUBackend.inputNormalization(normalization, statistics),
      weights: CPUBackend.pointers(weights), biases: biases.map(CPUBackend.pointers), output: output.buffer.pointer,
      batch: x.shape[0], height: x.shape[1], width: x.shape[2], channels: x.shape[3], kernelSize: weights.0.shape[0])
  }

  public func normalizedQuadraticDepthwiseConvolutionBackward(
    _ x: Tensor, normalization: LayerNormParameters, statistics: LayerNormStatistics, weights: TensorTriple,
    biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor, inputGradientAddend: Tensor?,
    normalizationGradients: (weight: Tensor, bias: Tensor), weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    QuadraticDepthwiseConvolution.backward(
      input: x.buffer.pointer, normalization: CPUBackend.inputNormalization(normalization, statistics),
      weights: CPUBackend.pointers(weights), biases: biases.map(CPUBackend.pointers),
      outputGradient: outputGradient.buffer.pointer, inputGradient: inputGradient.buffer.pointer,
      inputGradientAddend: inputGradientAddend.map { UnsafePointer($0.buffer.pointer) },
      weightGradients: CPUBackend.mutablePointers(weightGradients),
      biasGradients: biasGradients.map(CPUBackend.mutablePointers),
      normalizationGradients: (normalizationGradients.weight.buffer.pointer, normalizationGradients.bias.buffer.pointer),
      batch: x.shape[0], height: x.shape[1], width: x.shape[2], channels: x.shape[3], kernelSize: weights.0.shape[0])
  }

  public func convolution2D(
    _ x: Tensor, weight: Tensor, bias: Tensor?, geometry: Convolution2D.Geometry, into output: Tensor
  ) {
    Convolution2D.forward(
      input: x.buffer.pointer, weight: weight.buffer.pointer, bias: bias.map { UnsafePointer($0.buffer.pointer) },
      output: output.buffer.pointer, geometry: geometry)
  }

  public func convolution2DBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, geometry: Convolution2D.Geometry, inputGradient: Tensor?,
    weightGradient: Tensor, biasGradient: Tensor?
  ) {
    Convolution2D.backward(
      input: x.buffer.pointer, weight: weight.buffer.pointer, outputGradient: outputGradient.buffer.pointer,
      inputGradient: inputGradient?.buffer.pointer, weightGradient: weightGradient.buffer.pointer,
      biasGradient: biasGradient?.buffer.pointer, geometry: geometry)
  }

  public func quadraticCombination(_ z: Tensor, into output: Tensor) {
    let F = output.shape.last ?? 0
    let rows = F == 0 ? 0 : output.count / F
    let source = UnsafePointer(z.buffer.pointer), target = output.buffer.pointer
    Parallel.forRanges(rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(F, 1))) { range in
      for row in range {
        let a = source + row * 3 * F, b = a + F, c = b + F, y = target + row * F
        var j = 0
        while j + 8 <= F {
          ElementwiseKernels.store(
            ElementwiseKernels.load(c + j).addingProduct(ElementwiseKernels.load(a + j), ElementwiseKernels.load(b + j)),
            y + j)
          j += 8
        }
        while j < F {
          y[j] = a[j] * b[j] + c[j]
          j += 1
        }
      }
    }
  }

  public func quadraticGradients(overwriting z: Tensor, outputGradient: Tensor) {
    let F = outputGradient.shape.last ?? 0
    let rows = F == 0 ? 0 : outputGradient.count / F
    let target = z.buffer.pointer, gradient = UnsafePointer(outputGradient.buffer.pointer)
    Parallel.forRanges(rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(F, 1))) { range in
      for row in range {
        let a = target + row * 3 * F, b = a + F, c = b + F, g = gradient + row * F
        var j = 0
        while j + 8 <= F {
          let gv = ElementwiseKernels.load(g + j)
          let av = ElementwiseKernels.load(a + j), bv = ElementwiseKernels.load(b + j)
          ElementwiseKernels.store(gv * bv, a + j)
          ElementwiseKernels.store(gv * av, b + j)
          ElementwiseKernels.store(gv, c + j)
          j += 8
        }
        while j < F {
          let av = a[j]
          a[j] = g[j] * b[j]
          b[j] = g[j] * av
          c[j] = g[j]
          j += 1
        }
      }
    }
  }

  // MARK: Layout

  public func permute(_ x: Tensor, axes: [Int], into output: Tensor) {
    ShapeKernels.permute(x.buffer.pointer, shape: x.shape, axes: axes, into: output.buffer.pointer)
  }

  // MARK: Helpers

  private static func pointers(_ triple: TensorTriple) -> QuadraticDepthwiseConvolution.Pointers {
    (UnsafePointer(triple.0.buffer.pointer), UnsafePointer(triple.1.buffer.pointer), UnsafePointer(triple.2.buffer.pointer))
  }

  private static func mutablePointers(_ triple: TensorTriple) -> QuadraticDepthwiseConvolution.MutablePointers {
    (triple.0.buffer.pointer, triple.1.buffer.pointer, triple.2.buffer.pointer)
  }

  private static func inputNormalization(
    _ normalization: LayerNormParameters, _ statistics: LayerNormStatistics
  ) -> QuadraticDepthwiseConvolution.InputNormalization {
    .init(
      weight: normalization.weight.buffer.pointer, bias: normalization.bias.buffer.pointer,
      epsilon: normalization.epsilon, mean: statistics.mean.buffer.pointer,
      inverseStandardDeviation: statistics.inverseStandardDeviation.buffer.pointer)
  }
}

extension CPUBackend {
  /// `sums[j] = Σ_i matrix[i, j]` for a row-major `rows × columns` matrix (`rows > 0`).
  ///
  /// Threads take disjoint column ranges (multiples of 8 wide). Each range is swept in groups of
  /// 32 columns whose sums stay in four vector registers while all rows stream past.
  static func columnSums(
    _ matrix: UnsafePointer<Float>, rows: Int, columns: Int, into sums: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD8<Float>
    @inline(__always) func load(_ pointer: UnsafePointer<Float>) -> V {
      UnsafeRawPointer(pointer).loadUnaligned(as: V.self)
    }
    @inline(__always) func store(_ value: V, _ pointer: UnsafeMutablePointer<Float>) {
      UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: V.self)
    }
    let vectorBlocks = (columns + 7) / 8
    Parallel.forRanges(vectorBlocks, minimumChunk: Swift.max(1, (1 << 16) / (rows * 8))) { blocks in
      var j = blocks.lowerBound * 8
      let end = Swift.min(columns, blocks.upperBound * 8)
      while j + 32 <= end {
        var s0 = V(), s1 = V(), s2 = V(), s3 = V()
        var row = matrix + j
        for _ in 0..<rows {
          s0 += load(row)
          s1 += load(row + 8)
          s2 += load(row + 16)
          s3 += load(row + 24)
          row += columns
        }
        store(s0, sums + j)
        store(s1, sums + j + 8)
        store(s2, sums + j + 16)
        store(s3, sums + j + 24)
        j += 32
      }
      while j + 8 <= end {
        var s0 = V()
        var row = matrix + j
        for _ in 0..<rows {
          s0 += load(row)
          row += columns
        }
        store(s0, sums + j)
        j += 8
      }
      while j < end {
        var total: Float = 0
        for i in 0..<rows { total += matrix[i * columns + j] }
        sums[j] = total
        j += 1
      }
    }
  }
}

// MARK: - Deep, narrow products

extension CPUBackend {
  /// The shortest depth (`k`) slice worth its own partial product: long enough that packing and
  /// the micro-kernel's start-up stay small next to its `m·n·k/slices` multiply-adds.
  static let minimumDepthSlice = 1024

  /// How many depth slices `p` splits into, or nil to use the ordinary row/column split (always
  /// for batched products). The slices' partial products are tracked workspace, so
  /// ``MetaBackend`` charges exactly the products this selects.
  ///
  /// Weight gradients (`Xᵀ·G` with `k` = batch × pixels, `m` and `n` = channels) are deep and
  /// narrow: at 28×28 and batch 64, `m·n` is a few thousand while `k` is 12544. Splitting rows or
  /// columns of such a `C` makes every thread pack the whole shared operand again (about half
  /// of a thread's time at 2 threads); splitting `k` gives each thread disjoint operands and
  /// costs one `m·n` partial product per slice. The slice count depends on the shape only
  /// (≤ ``ElementwiseKernels/maximumReductionChunks``), so the result is the same on any thread
  /// count.
  static func depthSlices(_ p: MatrixProduct) -> Int? {
    guard p.batch == 1, p.k >= 2 * minimumDepthSlice, p.k >= 8 * Swift.max(p.m, p.n) else { return nil }
    return ElementwiseKernels.reductionChunkCount(
      p.k, minimumChunk: minimumDepthSlice, partialSize: p.m * p.n)
  }

  /// `c = op(a) · op(b)` (+ bias) as the sum, in slice order, of `slices` products over
  /// contiguous depth ranges, computed in parallel.
  static func multiplyInDepthSlices(
    _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, _ p: MatrixProduct, slices: Int,
    columnBias: UnsafePointer<Float>?, into c: UnsafeMutablePointer<Float>
  ) {
    let size = p.m * p.n
    KernelScratch.with(count: slices * size) { partials in
      Parallel.forEach(slices) { slice in
        let start = p.k * slice / slices, end = p.k * (slice + 1) / slices
        // Depth index d of op(A) is column d of A (row d when transposed); of op(B), row d (column d).
        GEMM.multiply(
          m: p.m, n: p.n, k: end - start,
          a: p.transposeA ? a + start * lda : a + start, lda: lda, transposeA: p.transposeA,
          b: p.transposeB ? b + start : b + start * ldb, ldb: ldb, transposeB: p.transposeB,
          c: partials + slice * size, ldc: Swift.max(1, p.n), alpha: 1, beta: 0, columnBias: nil, parallel: false)
      }
      Parallel.forRanges(p.m, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(p.n, 1))) {
        rows in
        let first = rows.lowerBound * p.n, count = rows.count * p.n
        (c + first).update(from: partials + first, count: count)
        for slice in 1..<slices {
          ElementwiseKernels.accumulate(partials + slice * size + first, into: c + first, count: count)
        }
        if let columnBias {
          for row in rows { ElementwiseKernels.accumulate(columnBias, into: c + row * p.n, count: p.n) }
        }
      }
    }
  }
}

// MARK: - Parameter updates

extension CPUBackend {
  public func adamWStep(_ step: AdamWStep, parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor) {
    OptimizerKernels.adamW(
      parameter: parameter.buffer.pointer, gradient: gradient.buffer.pointer, firstMoment: firstMoment.buffer.pointer,
      secondMoment: secondMoment.buffer.pointer, count: parameter.count, beta1: step.beta1, beta2: step.beta2,
      epsilon: step.epsilon, stepSize: step.stepSize, inverseRootSecondCorrection: step.inverseRootSecondCorrection,
      parameterScale: step.parameterScale)
  }

  public func adamWSteps(_ updates: [AdamWUpdate]) {
    OptimizerKernels.adamW(
      updates.map {
        OptimizerKernels.AdamWOperand(
          step: $0.step, parameter: $0.parameter.buffer.pointer, gradient: $0.gradient.buffer.pointer,
          firstMoment: $0.firstMoment.buffer.pointer, secondMoment: $0.secondMoment.buffer.pointer,
          count: $0.parameter.count)
      })
  }

  public func sgdStep(_ step: SGDStep, parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?) {
    OptimizerKernels.sgd(
      parameter: parameter.buffer.pointer, gradient: gradient.buffer.pointer, momentumBuffer: momentumBuffer?.buffer.pointer,
      count: parameter.count, learningRate: step.learningRate, momentum: step.momentum, weightDecay: step.weightDecay,
      nesterov: step.nesterov)
  }

  public func linearCombination(_ x: Tensor, scaledBy alpha: Float, adding y: Tensor, scaledBy beta: Float) {
    OptimizerKernels.linearCombination(x.buffer.pointer, scaledBy: alpha, adding: y.buffer.pointer, scaledBy: beta, count: x.count)
  }
}

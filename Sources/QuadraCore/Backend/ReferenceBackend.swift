import Foundation

/// The oracle: every primitive as the plain loop of its formula, one thread, no SIMD, sums and
/// intermediate products in Double. It is slow on purpose and shares nothing with the CPU
/// kernels except the shape conventions, so agreement between the two is evidence for both.
///
/// It keeps its tensors in host memory (``Device/cpu``), so ``Backends/current`` can switch
/// between it and ``CPUBackend`` on the same tensors.
public struct ReferenceBackend: Backend {
  public var name: String { "reference" }
  public var device: Device { .cpu }

  public init() {}

  // MARK: Memory

  public func makeBuffer(count: Int) -> TensorBuffer { TensorBuffer(count: count, device: device) }

  public func copy(fromHost source: UnsafeBufferPointer<Float>, into destination: Tensor, at offset: Int) {
    let d = destination.buffer.pointer
    for i in source.indices { d[offset + i] = source[i] }
  }

  public func copy(_ source: Tensor, from offset: Int, toHost destination: UnsafeMutableBufferPointer<Float>) {
    let s = source.buffer.pointer
    for i in destination.indices { destination[i] = s[offset + i] }
  }

  public func fill(_ tensor: Tensor, with value: Float) {
    let d = tensor.buffer.pointer
    for i in 0..<tensor.count { d[i] = value }
  }

  public func copyBlock(
    from source: Tensor, _ sourceBlock: StridedBlock, into destination: Tensor, _ destinationBlock: StridedBlock,
    rows: Int, width: Int
  ) {
    let s = source.buffer.pointer, d = destination.buffer.pointer
    for row in 0..<rows {
      for j in 0..<width {
        d[destinationBlock.offset + row * destinationBlock.rowStride + j] =
          s[sourceBlock.offset + row * sourceBlock.rowStride + j]
      }
    }
  }

  public func gatherImages(
    from source: Tensor, indices: [Int], transforms: [ImageTransform]?, fill: Float, into output: Tensor
  ) {
    let (h, w, c) = (source.shape[1], source.shape[2], source.shape[3])
    let s = source.buffer.pointer, d = output.buffer.pointer
    for (b, index) in indices.enumerated() {
      let t = transforms?[b] ?? .identity
      for y in 0..<h {
        for x in 0..<w {
          let sy = y + t.dy
          let sx = (t.flip ? w - 1 - x : x) + t.dx
          let inside = sy >= 0 && sy < h && sx >= 0 && sx < w
          for k in 0..<c {
            d[((b * h + y) * w + x) * c + k] = inside ? s[((index * h + sy) * w + sx) * c + k] : fill
          }
        }
      }
    }
  }

  // MARK: Linear algebra

  public func matrixMultiply(_ a: Tensor, _ b: Tensor, _ p: MatrixProduct, columnBias: Tensor?, into c: Tensor) {
    let x = a.buffer.pointer, y = b.buffer.pointer, z = c.buffer.pointer
    let bias = columnBias?.buffer.pointer
    for batch in 0..<p.batch {
      let aBase = batch * p.m * p.k, bBase = batch * p.k * p.n, cBase = batch * p.m * p.n
      for i in 0..<p.m {
        for j in 0..<p.n {
          var total = Double(bias?[j] ?? 0)
          for l in 0..<p.k {
            let left = p.transposeA ? x[aBase + l * p.m + i] : x[aBase + i * p.k + l]
            let right = p.transposeB ? y[bBase + j * p.k + l] : y[bBase + l * p.n + j]
            total += Double(left) * Double(right)
          }
          z[cBase + i * p.n + j] = Float(total)
        }
      }
    }
  }

  // MARK: Elementwise and reductions

  public func binary(_ op: BinaryOperator, _ a: Tensor, _ b: Tensor, into output: Tensor) {
    let x = a.buffer.pointer, y = b.buffer.pointer, z = output.buffer.pointer
    let shape = output.shape
    // Read both operands before writing: `output` may be `a`.
    var results = [Float](repeating: 0, count: output.count)
    for flat in 0..<output.count {
      let index = ReferenceBackend.multiIndex(flat, shape: shape)
      let right = y[ReferenceBackend.broadcastOffset(index, shape: b.shape)]
      switch op {
      case .add: results[flat] = x[ReferenceBackend.broadcastOffset(index, shape: a.shape)] + right
      case .subtract: results[flat] = x[ReferenceBackend.broadcastOffset(index, shape: a.shape)] - right
      case .multiply: results[flat] = x[ReferenceBackend.broadcastOffset(index, shape: a.shape)] * right
      case .second: results[flat] = right
      }
    }
    for flat in results.indices { z[flat] = results[flat] }
  }

  public func sum(_ x: Tensor, keeping keep: [Bool], into output: Tensor) {
    let keptShape = zip(x.shape, keep).filter(\.1).map(\.0)
    var totals = [Double](repeating: 0, count: output.count)
    let s = x.buffer.pointer
    for flat in 0..<x.count {
      let index = ReferenceBackend.multiIndex(flat, shape: x.shape)
      let kept = zip(index, keep).filter(\.1).map(\.0)
      totals[ReferenceBackend.flatIndex(kept, shape: keptShape)] += Double(s[flat])
    }
    let d = output.buffer.pointer
    for i in totals.indices { d[i] = Float(totals[i]) }
  }

  public func sumOfProducts(_ a: Tensor, _ b: Tensor, into output: Tensor) {
    let c = output.count
    let x = a.buffer.pointer, y = b.buffer.pointer, d = output.buffer.pointer
    for j in 0..<c {
      var total = 0.0
      for row in 0..<(c == 0 ? 0 : a.count / c) { total += Double(x[row * c + j]) * Double(y[row * c + j]) }
      d[j] = Float(total)
    }
  }

  public func sumAll(_ x: Tensor) -> Double {
    var total = 0.0
    for i in 0..<x.count { total += Double(x.buffer.pointer[i]) }
    return total
  }

  public func squaredSum(_ x: Tensor) -> Double {
    var total = 0.0
    for i in 0..<x.count { total += Double(x.buffer.pointer[i]) * Double(x.buffer.pointer[i]) }
    return total
  }

  public func maxAbs(_ x: Tensor) -> Float {
    var result: Float = 0
    for i in 0..<x.count { result = Swift.max(result, Swift.abs(x.buffer.pointer[i])) }
    return result
  }

  public func argmaxRows(_ x: Tensor) -> [Int] {
    let c = x.shape[x.rank - 1], s = x.buffer.pointer
    return (0..<(x.count / c)).map { row in
      var best = 0
      for j in 0..<c where s[row * c + j] > s[row * c + best] { best = j }
      return best
    }
  }

  // MARK: Activations, normalization, loss

  /// Φ(v) = ½(1 + erf(v/√2)), the standard normal CDF.
  static func normalCDF(_ v: Double) -> Double { 0.5 * (1 + Foundation.erf(v / 2.0.squareRoot())) }
  /// φ(v) = e^(−v²/2)/√(2π), the standard normal density.
  static func normalDensity(_ v: Double) -> Double { Foundation.exp(-0.5 * v * v) / (2 * Double.pi).squareRoot() }

  public func gelu(_ x: Tensor, bias: Tensor?, into output: Tensor) {
    let s = x.buffer.pointer, d = output.buffer.pointer
    let c = bias?.count ?? 1
    for i in 0..<x.count {
      let v = Double(s[i]) + Double(bias?.buffer.pointer[i % c] ?? 0)
      d[i] = Float(v * ReferenceBackend.normalCDF(v))
    }
  }

  public func geluBackward(
    _ x: Tensor, bias: Tensor?, outputGradient: Tensor, inputGradient: Tensor, biasGradient: Tensor?
  ) {
    let s = x.buffer.pointer, g = outputGradient.buffer.pointer, d = inputGradient.buffer.pointer
    let c = biasGradient?.count ?? bias?.count ?? 1
    var biasTotals = [Double](repeating: 0, count: c)
    for i in 0..<x.count {
      let v = Double(s[i]) + Double(bias?.buffer.pointer[i % c] ?? 0)
      let gradient = Double(g[i]) * (ReferenceBackend.normalCDF(v) + v * ReferenceBackend.normalDensity(v))
      d[i] = Float(gradient)
      biasTotals[i % c] += gradient
    }
    if let biasGradient {
      for j in 0..<c { biasGradient.buffer.pointer[j] = Float(biasTotals[j]) }
    }
  }

  /// Softmax of one row in Double, and its log-sum-exp.
  static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count c: Int) -> (probabilities: [Double], logSumExp: Double) {
    var m = -Double.infinity
    for j in 0..<c { m = Swift.max(m, Double(row[j])) }
    let exponentials = (0..<c).map { Foundation.exp(Double(row[$0]) - m) }
    let total = exponentials.reduce(0, +)
    return (exponentials.map { $0 / total }, m + Foundation.log(total))
  }

  public func softmax(_ x: Tensor, into output: Tensor) {
    let c = x.shape[x.rank - 1]
    for row in 0..<(x.count / c) {
      let p = ReferenceBackend.softmaxRow(x.buffer.pointer + row * c, count: c).probabilities
      for j in 0..<c { output.buffer.pointer[row * c + j] = Float(p[j]) }
    }
  }

  /// Smoothed target `q_j = (1 − ε)·[j = label] + ε/K`.
  static func target(_ j: Int, label: Int, smoothing: Double, classes: Int) -> Double {
    (j == label ? 1 - smoothing : 0) + smoothing / Double(classes)
  }

  public func softmaxCrossEntropy(_ logits: Tensor, labels: [Int], labelSmoothing: Float, probabilities: Tensor) -> Double {
    let k = logits.shape[1]
    var total = 0.0
    for (row, label) in labels.enumerated() {
      let z = logits.buffer.pointer + row * k
      let (p, logSumExp) = ReferenceBackend.softmaxRow(z, count: k)
      for j in 0..<k {
        probabilities.buffer.pointer[row * k + j] = Float(p[j])
        let q = ReferenceBackend.target(j, label: label, smoothing: Double(labelSmoothing), classes: k)
        total += q * (logSumExp - Double(z[j]))  // −q·log softmax
      }
    }
    return total / Double(Swift.max(labels.count, 1))
  }

  public func softmaxCrossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing: Float, scale: Float, into gradient: Tensor
  ) {
    let k = probabilities.shape[1]
    for (row, label) in labels.enumerated() {
      for j in 0..<k {
        let q = ReferenceBackend.target(j, label: label, smoothing: Double(labelSmoothing), classes: k)
        let p = Double(probabilities.buffer.pointer[row * k + j])
        gradient.buffer.pointer[row * k + j] = Float((p - q) * Double(scale))
      }
    }
  }

  public func layerNorm(
    _ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float, into output: Tensor, mean: Tensor,
    inverseStandardDeviation: Tensor
  ) {
    let c = weight.count, s = x.buffer.pointer
    for row in 0..<(x.count / c) {
      let values = (0..<c).map { Double(s[row * c + $0]) }
      let mu = values.reduce(0, +) / Double(c)
      let variance = values.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(c)
      let inverse = 1 / (variance + Double(epsilon)).squareRoot()
      for j in 0..<c {
        let normalized = (values[j] - mu) * inverse
        output.buffer.pointer[row * c + j] = Float(
          normalized * Double(weight.buffer.pointer[j]) + Double(bias.buffer.pointer[j]))
      }
      mean.buffer.pointer[row] = Float(mu)
      inverseStandardDeviation.buffer.pointer[row] = Float(inverse)
    }
  }

  public func layerNormBackward(
    _ x: Tensor, outputGradient: Tensor, weight: Tensor, mean: Tensor, inverseStandardDeviation: Tensor,
    inputGradient: Tensor, inputGradientAddend: Tensor?, weightGradient: Tensor, biasGradient: Tensor
  ) {
    let c = weight.count, s = x.buffer.pointer, g = outputGradient.buffer.pointer
    var weightTotals = [Double](repeating: 0, count: c), biasTotals = [Double](repeating: 0, count: c)
    for row in 0..<(x.count / c) {
      let mu = Double(mean.buffer.pointer[row]), inverse = Double(inverseStandardDeviation.buffer.pointer[row])
      let normalized = (0..<c).map { (Double(s[row * c + $0]) - mu) * inverse }
      let scaled = (0..<c).map { Double(g[row * c + $0]) * Double(weight.buffer.pointer[$0]) }
      let meanScaled = scaled.reduce(0, +) / Double(c)
      let meanScaledNormalized = zip(scaled, normalized).map { $0 * $1 }.reduce(0, +) / Double(c)
      for j in 0..<c {
        let addend = inputGradientAddend.map { Double($0.buffer.pointer[row * c + j]) } ?? 0
        inputGradient.buffer.pointer[row * c + j] = Float(
          inverse * (scaled[j] - meanScaled - normalized[j] * meanScaledNormalized) + addend)
        weightTotals[j] += Double(g[row * c + j]) * normalized[j]
        biasTotals[j] += Double(g[row * c + j])
      }
    }
    for j in 0..<c {
      weightGradient.buffer.pointer[j] = Float(weightTotals[j])
      biasGradient.buffer.pointer[j] = Float(biasTotals[j])
    }
  }

  public func layerScaleResidual(_ x: Tensor, branch m: Tensor, scale: Tensor, into output: Tensor) {
    let c = scale.count
    let xp = x.buffer.pointer, mp = m.buffer.pointer, gamma = scale.buffer.pointer, y = output.buffer.pointer
    for i in 0..<(c == 0 ? 0 : x.count) { y[i] = xp[i] + gamma[i % c] * mp[i] }
  }

  public func layerScaleResidualBackward(
    branch m: Tensor, scale: Tensor, outputGradient: Tensor, branchGradient: Tensor, scaleGradient: Tensor
  ) {
    let c = scale.count
    let gamma = scale.buffer.pointer, dy = outputGradient.buffer.pointer
    let dm = branchGradient.buffer.pointer
    for i in 0..<(c == 0 ? 0 : m.count) { dm[i] = dy[i] * gamma[i % c] }
    sumOfProducts(outputGradient, m, into: scaleGradient)
  }

  public func residualMLP(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, into output: Tensor, saved: ResidualMLPSaved
  ) {
    composedResidualMLP(x, parameters: parameters, epsilon: epsilon, into: output, saved: saved)
  }

  public func residualMLPBackward(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, saved: ResidualMLPSaved, outputGradient: Tensor,
    inputGradient: Tensor, gradients: ResidualMLPParameters
  ) {
    composedResidualMLPBackward(
      x, parameters: parameters, epsilon: epsilon, saved: saved, outputGradient: outputGradient, inputGradient: inputGradient,
      gradients: gradients)
  }

  // MARK: Convolutions

  /// `Σ_{i,j} x[n, h + i − p, w + j − p, c] · W[i, j, c] + b[c]` for all positions, in Double.
  static func depthwise(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> [Double] {
    let (n, h, w, c, k) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], weight.shape[0])
    let p = k / 2, s = x.buffer.pointer, wt = weight.buffer.pointer
    var result = [Double](repeating: 0, count: x.count)
    for image in 0..<n {
      for y in 0..<h {
        for xx in 0..<w {
          for ch in 0..<c {
            var total = Double(bias?.buffer.pointer[ch] ?? 0)
            for i in 0..<k {
              for j in 0..<k {
                let sy = y + i - p, sx = xx + j - p
                guard sy >= 0 && sy < h && sx >= 0 && sx < w else { continue }
                total += Double(s[((image * h + sy) * w + sx) * c + ch]) * Double(wt[(i * k + j) * c + ch])
              }
            }
            result[((image * h + y) * w + xx) * c + ch] = total
          }
        }
      }
    }
    return result
  }

  /// Adds the gradients of ``depthwise(_:_:_:)`` for output gradient `g` (Double, shape of `x`):
  /// the adjoint scatter `dx[n, h + i − p, w + j − p, c] += g · W[i, j, c]`, `dW[i, j, c] += x · g`, `db[c] += g`.
  static func depthwiseAdjoint(
    _ x: Tensor, _ weight: Tensor, _ g: [Double], inputGradient: inout [Double], weightGradient: inout [Double],
    biasGradient: inout [Double]
  ) {
    let (n, h, w, c, k) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], weight.shape[0])
    let p = k / 2, s = x.buffer.pointer, wt = weight.buffer.pointer
    for image in 0..<n {
      for y in 0..<h {
        for xx in 0..<w {
          for ch in 0..<c {
            let gradient = g[((image * h + y) * w + xx) * c + ch]
            biasGradient[ch] += gradient
            for i in 0..<k {
              for j in 0..<k {
                let sy = y + i - p, sx = xx + j - p
                guard sy >= 0 && sy < h && sx >= 0 && sx < w else { continue }
                let source = ((image * h + sy) * w + sx) * c + ch, tap = (i * k + j) * c + ch
                inputGradient[source] += gradient * Double(wt[tap])
                weightGradient[tap] += gradient * Double(s[source])
              }
            }
          }
        }
      }
    }
  }

  public func depthwiseConvolution(_ x: Tensor, weight: Tensor, bias: Tensor?, into output: Tensor) {
    ReferenceBackend.store(ReferenceBackend.depthwise(x, weight, bias), into: output)
  }

  public func depthwiseConvolutionBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, inputGradient: Tensor?, weightGradient: Tensor,
    biasGradient: Tensor?
  ) {
    var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: weight.count)
    var db = [Double](repeating: 0, count: x.shape[3])
    ReferenceBackend.depthwiseAdjoint(
      x, weight, ReferenceBackend.doubles(outputGradient), inputGradient: &dx, weightGradient: &dw, biasGradient: &db)
    if let inputGradient { ReferenceBackend.store(dx, into: inputGradient) }
    ReferenceBackend.store(dw, into: weightGradient)
    if let biasGradient { ReferenceBackend.store(db, into: biasGradient) }
  }

  public func quadraticDepthwiseConvolution(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, into output: Tensor
  ) {
    let a = ReferenceBackend.depthwise(x, weights.0, biases?.0)
    let b = ReferenceBackend.depthwise(x, weights.1, biases?.1)
    let c = ReferenceBackend.depthwise(x, weights.2, biases?.2)
    ReferenceBackend.store((0..<x.count).map { a[$0] * b[$0] + c[$0] }, into: output)
  }

  public func normalizedQuadraticDepthwiseConvolution(
    _ x: Tensor, normalization: LayerNormParameters, weights: TensorTriple, biases: TensorTriple?, into output: Tensor,
    statistics: LayerNormStatistics
  ) {
    composedNormalizedQuadraticDepthwiseConvolution(
      x, normalization: normalization, weights: weights, biases: biases, into: output, statistics: statistics)
  }

  public func normalizedQuadraticDepthwiseConvolutionBackward(
    _ x: Tensor, normalization: LayerNormParameters, statistics: LayerNormStatistics, weights: TensorTriple,
    biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor, inputGradientAddend: Tensor?,
    normalizationGradients: (weight: Tensor, bias: Tensor), weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    composedNormalizedQuadraticDepthwiseConvolutionBackward(
      x, normalization: normalization, statistics: statistics, weights: weights, biases: biases,
      outputGradient: outputGradient, inputGradient: inputGradient, inputGradientAddend: inputGradientAddend,
      normalizationGradients: normalizationGradients, weightGradients: weightGradients, biasGradients: biasGradients)
  }

  public func quadraticDepthwiseConvolutionBackward(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor?,
    weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    let a = ReferenceBackend.depthwise(x, weights.0, biases?.0)
    let b = ReferenceBackend.depthwise(x, weights.1, biases?.1)
    let g = ReferenceBackend.doubles(outputGradient)
    // ∂y/∂a = b, ∂y/∂b = a, ∂y/∂c = 1.
    let factorGradients = [zip(g, b).map { $0 * $1 }, zip(g, a).map { $0 * $1 }, g]
    let factorWeights = [weights.0, weights.1, weights.2]
    let weightOutputs = [weightGradients.0, weightGradients.1, weightGradients.2]
    let biasOutputs = biasGradients.map { [$0.0, $0.1, $0.2] }
    var dx = [Double](repeating: 0, count: x.count)
    for factor in 0..<3 {
      var dw = [Double](repeating: 0, count: weights.0.count), db = [Double](repeating: 0, count: x.shape[3])
      ReferenceBackend.depthwiseAdjoint(
        x, factorWeights[factor], factorGradients[factor], inputGradient: &dx, weightGradient: &dw,
        biasGradient: &db)
      ReferenceBackend.store(dw, into: weightOutputs[factor])
      if let biasOutputs { ReferenceBackend.store(db, into: biasOutputs[factor]) }
    }
    if let inputGradient { ReferenceBackend.store(dx, into: inputGradient) }
  }

  /// Calls `body(outputIndex, inputIndex, weightIndex)` for every product of the dense convolution.
  static func forEachConvolutionTap(_ g: Convolution2D.Geometry, _ body: (Int, Int, Int) -> Void) {
    for n in 0..<g.batch {
      for oh in 0..<g.outputHeight {
        for ow in 0..<g.outputWidth {
          for o in 0..<g.outputChannels {
            let out = ((n * g.outputHeight + oh) * g.outputWidth + ow) * g.outputChannels + o
            for i in 0..<g.kernelHeight {
              for j in 0..<g.kernelWidth {
                let y = oh * g.strideHeight + i - g.paddingHeight, x = ow * g.strideWidth + j - g.paddingWidth
                guard y >= 0 && y < g.height && x >= 0 && x < g.width else { continue }
                for c in 0..<g.inputChannels {
                  body(
                    out, ((n * g.height + y) * g.width + x) * g.inputChannels + c,
                    ((o * g.kernelHeight + i) * g.kernelWidth + j) * g.inputChannels + c)
                }
              }
            }
          }
        }
      }
    }
  }

  public func convolution2D(
    _ x: Tensor, weight: Tensor, bias: Tensor?, geometry g: Convolution2D.Geometry, into output: Tensor
  ) {
    var totals = [Double](repeating: 0, count: output.count)
    if let bias {
      for i in totals.indices { totals[i] = Double(bias.buffer.pointer[i % g.outputChannels]) }
    }
    let s = x.buffer.pointer, wt = weight.buffer.pointer
    ReferenceBackend.forEachConvolutionTap(g) { out, input, tap in totals[out] += Double(s[input]) * Double(wt[tap]) }
    ReferenceBackend.store(totals, into: output)
  }

  public func convolution2DBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, geometry g: Convolution2D.Geometry, inputGradient: Tensor?,
    weightGradient: Tensor, biasGradient: Tensor?
  ) {
    var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: weight.count)
    let s = x.buffer.pointer, wt = weight.buffer.pointer, dy = outputGradient.buffer.pointer
    ReferenceBackend.forEachConvolutionTap(g) { out, input, tap in
      dx[input] += Double(dy[out]) * Double(wt[tap])
      dw[tap] += Double(dy[out]) * Double(s[input])
    }
    if let inputGradient { ReferenceBackend.store(dx, into: inputGradient) }
    ReferenceBackend.store(dw, into: weightGradient)
    if let biasGradient {
      var db = [Double](repeating: 0, count: g.outputChannels)
      for i in 0..<outputGradient.count { db[i % g.outputChannels] += Double(dy[i]) }
      ReferenceBackend.store(db, into: biasGradient)
    }
  }

  public func quadraticCombination(_ z: Tensor, into output: Tensor) {
    let f = output.shape.last ?? 0, s = z.buffer.pointer
    for row in 0..<(f == 0 ? 0 : output.count / f) {
      for j in 0..<f {
        let base = row * 3 * f + j
        output.buffer.pointer[row * f + j] = Float(
          Double(s[base]) * Double(s[base + f]) + Double(s[base + 2 * f]))
      }
    }
  }

  public func quadraticGradients(overwriting z: Tensor, outputGradient: Tensor) {
    let f = outputGradient.shape.last ?? 0, s = z.buffer.pointer, g = outputGradient.buffer.pointer
    for row in 0..<(f == 0 ? 0 : outputGradient.count / f) {
      for j in 0..<f {
        let base = row * 3 * f + j
        let (a, b) = (s[base], s[base + f])
        s[base] = g[row * f + j] * b
        s[base + f] = g[row * f + j] * a
        s[base + 2 * f] = g[row * f + j]
      }
    }
  }

  // MARK: Layout

  public func permute(_ x: Tensor, axes: [Int], into output: Tensor) {
    for flat in 0..<output.count {
      let index = ReferenceBackend.multiIndex(flat, shape: output.shape)
      var source = [Int](repeating: 0, count: x.rank)
      for (outputAxis, inputAxis) in axes.enumerated() { source[inputAxis] = index[outputAxis] }
      output.buffer.pointer[flat] = x.buffer.pointer[ReferenceBackend.flatIndex(source, shape: x.shape)]
    }
  }

  // MARK: Index arithmetic

  static func multiIndex(_ flat: Int, shape: [Int]) -> [Int] {
    var index = [Int](repeating: 0, count: shape.count)
    var rest = flat
    for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] > 0 {
      index[axis] = rest % shape[axis]
      rest /= shape[axis]
    }
    return index
  }

  static func flatIndex(_ index: [Int], shape: [Int]) -> Int {
    zip(index, shape).reduce(0) { $0 * $1.1 + $1.0 }
  }

  /// The element of an operand of `shape` that broadcasts to output position `index` (right-aligned; size-1 axes repeat).
  static func broadcastOffset(_ index: [Int], shape: [Int]) -> Int {
    let lead = index.count - shape.count
    return flatIndex((0..<shape.count).map { shape[$0] == 1 ? 0 : index[lead + $0] }, shape: shape)
  }

  static func doubles(_ tensor: Tensor) -> [Double] {
    (0..<tensor.count).map { Double(tensor.buffer.pointer[$0]) }
  }

  static func store(_ values: [Double], into tensor: Tensor) {
    for i in values.indices { tensor.buffer.pointer[i] = Float(values[i]) }
  }
}

// MARK: - Parameter updates

extension ReferenceBackend {
  public func adamWStep(_ step: AdamWStep, parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor) {
    let theta = parameter.buffer.pointer, g = gradient.buffer.pointer
    let m = firstMoment.buffer.pointer, v = secondMoment.buffer.pointer
    for i in 0..<parameter.count {
      m[i] = step.beta1 * m[i] + (1 - step.beta1) * g[i]
      v[i] = step.beta2 * v[i] + (1 - step.beta2) * g[i] * g[i]
      let denominator = v[i].squareRoot() * step.inverseRootSecondCorrection + step.epsilon
      theta[i] = theta[i] * step.parameterScale - step.stepSize * m[i] / denominator
    }
  }

  public func sgdStep(_ step: SGDStep, parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?) {
    let theta = parameter.buffer.pointer, g = gradient.buffer.pointer
    for i in 0..<parameter.count {
      var direction = g[i] + step.weightDecay * theta[i]
      if let buffer = momentumBuffer?.buffer.pointer {
        buffer[i] = step.momentum * buffer[i] + direction
        direction = step.nesterov ? direction + step.momentum * buffer[i] : buffer[i]
      }
      theta[i] -= step.learningRate * direction
    }
  }

  public func linearCombination(_ x: Tensor, scaledBy alpha: Float, adding y: Tensor, scaledBy beta: Float) {
    let xs = x.buffer.pointer, ys = y.buffer.pointer
    for i in 0..<x.count { xs[i] = alpha * xs[i] + beta * ys[i] }
  }
}

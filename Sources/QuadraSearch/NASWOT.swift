import Foundation
import Synchronization
import QuadraModels

/// NASWOT, "Neural Architecture Search without Training" (Mellor et al., ICML 2021): how differently
/// an untrained network's units switch for the images of one mini-batch.
///
/// Every GELU input `z` gives one bit per unit, `z > 0` (GELU(z) = z·Φ(z) is positive exactly when z
/// is). Image `i`'s code `cᵢ` concatenates the bits of all `N_A` GELU units of the network; with
/// `d_H` the Hamming distance,
///
///     K[i][j] = N_A − d_H(cᵢ, cⱼ),        score = log |det K|
///
/// (natural log, from an LU factorization in `Double`). Images the network maps to similar codes make
/// `K` near-singular and the score low. The score is a pure function of the architecture, the weight
/// seed (0) and the batch, so it is deterministic.
public enum NASWOT {
  /// The score of `config` (untrained, weights from seed 0) on `images` `[N, H, W, C]`, N ≥ 2.
  ///
  /// - Throws: ``SearchSpaceError`` when the batch has fewer than 2 images or does not fit the model.
  public static func score(_ config: ModelConfig, images: Tensor) throws -> Double {
    guard images.rank == 4, images.shape[0] >= 2, images.shape[3] == config.inputChannels else {
      throw SearchSpaceError(
        field: "images", message: "NASWOT needs a batch [N ≥ 2, H, W, \(config.inputChannels)], got \(images.shape)")
    }
    try config.validate(resolution: images.shape[1])
    let model = try VisionModel(config: config, seed: 0)
    model.setTraining(false)
    let recorder = ActivationCodeRecorder(batch: images.shape[0])
    ComputeContext.current.with(backend: recorder).run {
      GradientMode.withoutRecording { _ = model(Variable(images)) }
    }
    return logAbsoluteDeterminant(recorder.kernel())
  }

  /// `K[i][j] = N_A − d_H(cᵢ, cⱼ)` of binary codes given as one `[Bool]` per image (all of one length).
  public static func kernel(codes: [[Bool]]) -> [[Double]] {
    let units = Double(codes.first?.count ?? 0)
    return codes.map { a in
      codes.map { b in units - Double(zip(a, b).reduce(0) { $0 + ($1.0 != $1.1 ? 1 : 0) }) }
    }
  }

  /// `log |det A|` by Gaussian elimination with partial pivoting in `Double` (numpy's `slogdet`
  /// magnitude); `-infinity` for a singular matrix.
  public static func logAbsoluteDeterminant(_ matrix: [[Double]]) -> Double {
    var a = matrix
    let n = a.count
    var total = 0.0
    for column in 0..<n {
      guard let pivot = (column..<n).max(by: { abs(a[$0][column]) < abs(a[$1][column]) }), a[pivot][column] != 0 else {
        return -.infinity
      }
      a.swapAt(column, pivot)
      total += log(abs(a[column][column]))
      for row in (column + 1)..<n {
        let factor = a[row][column] / a[column][column]
        if factor == 0 { continue }
        for k in column..<n { a[row][k] -= factor * a[column][k] }
      }
    }
    return total
  }
}

/// A backend that computes with ``QuadraCore/CPUBackend`` and, for every GELU, adds the agreement of
/// each pair of images' activation bits to a running kernel (the codes themselves are never stored:
/// per GELU they are packed 64 units to a word and compared with XOR and popcount).
final class ActivationCodeRecorder: Backend {
  let name = "naswot-recorder"
  let device = Device.cpu
  private let base = CPUBackend()
  private let batch: Int
  /// Agreements K[i][j] (units with equal bits) so far, row-major `batch × batch`.
  private let agreements: Mutex<[Int]>

  init(batch: Int) {
    self.batch = batch
    agreements = Mutex([Int](repeating: 0, count: batch * batch))
  }

  func kernel() -> [[Double]] {
    let counts = agreements.withLock { $0 }
    return (0..<batch).map { i in (0..<batch).map { j in Double(counts[i * batch + j]) } }
  }

  func gelu(_ x: Tensor, bias: Tensor?, into output: Tensor) {
    base.gelu(x, bias: bias, into: output)
    // Rows are image-major (NHWC, or [N·H·W, C] for the MLP), so image i owns the i-th contiguous slice.
    guard output.count % batch == 0 else { return }
    let units = output.count / batch
    let words = (units + 63) / 64
    var packed = [UInt64](repeating: 0, count: batch * words)
    output.withUnsafeBufferPointer { values in
      for image in 0..<batch {
        let start = image * units
        for unit in 0..<units where values[start + unit] > 0 {
          packed[image * words + unit / 64] |= 1 << UInt64(unit % 64)
        }
      }
    }
    var local = [Int](repeating: 0, count: batch * batch)
    for i in 0..<batch {
      local[i * batch + i] = units
      for j in (i + 1)..<batch {
        var distance = 0
        for w in 0..<words { distance += (packed[i * words + w] ^ packed[j * words + w]).nonzeroBitCount }
        local[i * batch + j] = units - distance
        local[j * batch + i] = units - distance
      }
    }
    agreements.withLock { total in for index in total.indices { total[index] += local[index] } }
  }

  // Everything else is the CPU backend's.
  func makeBuffer(count: Int) -> TensorBuffer { base.makeBuffer(count: count) }
  func copy(fromHost source: UnsafeBufferPointer<Float>, into destination: Tensor, at offset: Int) {
    base.copy(fromHost: source, into: destination, at: offset)
  }
  func copy(_ source: Tensor, from offset: Int, toHost destination: UnsafeMutableBufferPointer<Float>) {
    base.copy(source, from: offset, toHost: destination)
  }
  func fill(_ tensor: Tensor, with value: Float) { base.fill(tensor, with: value) }
  func copyBlock(
    from source: Tensor, _ sourceBlock: StridedBlock, into destination: Tensor, _ destinationBlock: StridedBlock,
    rows: Int, width: Int
  ) { base.copyBlock(from: source, sourceBlock, into: destination, destinationBlock, rows: rows, width: width) }
  func gatherImages(from source: Tensor, indices: [Int], transforms: [ImageTransform]?, fill: Float, into output: Tensor) {
    base.gatherImages(from: source, indices: indices, transforms: transforms, fill: fill, into: output)
  }
  func matrixMultiply(_ a: Tensor, _ b: Tensor, _ product: MatrixProduct, columnBias: Tensor?, into c: Tensor) {
    base.matrixMultiply(a, b, product, columnBias: columnBias, into: c)
  }
  func binary(_ op: BinaryOperator, _ a: Tensor, _ b: Tensor, into output: Tensor) { base.binary(op, a, b, into: output) }
  func sum(_ x: Tensor, keeping keep: [Bool], into output: Tensor) { base.sum(x, keeping: keep, into: output) }
  func sumOfProducts(_ a: Tensor, _ b: Tensor, into output: Tensor) { base.sumOfProducts(a, b, into: output) }
  func sumAll(_ x: Tensor) -> Double { base.sumAll(x) }
  func squaredSum(_ x: Tensor) -> Double { base.squaredSum(x) }
  func maxAbs(_ x: Tensor) -> Float { base.maxAbs(x) }
  func argmaxRows(_ x: Tensor) -> [Int] { base.argmaxRows(x) }
  func geluBackward(_ x: Tensor, bias: Tensor?, outputGradient: Tensor, inputGradient: Tensor, biasGradient: Tensor?) {
    base.geluBackward(x, bias: bias, outputGradient: outputGradient, inputGradient: inputGradient, biasGradient: biasGradient)
  }
  func softmax(_ x: Tensor, into output: Tensor) { base.softmax(x, into: output) }
  func softmaxCrossEntropy(_ logits: Tensor, labels: [Int], labelSmoothing: Float, probabilities: Tensor) -> Double {
    base.softmaxCrossEntropy(logits, labels: labels, labelSmoothing: labelSmoothing, probabilities: probabilities)
  }
  func softmaxCrossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing: Float, scale: Float, into gradient: Tensor
  ) {
    base.softmaxCrossEntropyBackward(
      probabilities: probabilities, labels: labels, labelSmoothing: labelSmoothing, scale: scale, into: gradient)
  }
  func layerNorm(
    _ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float, into output: Tensor, mean: Tensor,
    inverseStandardDeviation: Tensor
  ) {
    base.layerNorm(
      x, weight: weight, bias: bias, epsilon: epsilon, into: output, mean: mean,
      inverseStandardDeviation: inverseStandardDeviation)
  }
  func layerNormBackward(
    _ x: Tensor, outputGradient: Tensor, weight: Tensor, mean: Tensor, inverseStandardDeviation: Tensor,
    inputGradient: Tensor, inputGradientAddend: Tensor?, weightGradient: Tensor, biasGradient: Tensor
  ) {
    base.layerNormBackward(
      x, outputGradient: outputGradient, weight: weight, mean: mean, inverseStandardDeviation: inverseStandardDeviation,
      inputGradient: inputGradient, inputGradientAddend: inputGradientAddend, weightGradient: weightGradient,
      biasGradient: biasGradient)
  }
  func layerScaleResidual(_ x: Tensor, branch m: Tensor, scale: Tensor, into output: Tensor) {
    base.layerScaleResidual(x, branch: m, scale: scale, into: output)
  }
  func layerScaleResidualBackward(
    branch m: Tensor, scale: Tensor, outputGradient: Tensor, branchGradient: Tensor, scaleGradient: Tensor
  ) {
    base.layerScaleResidualBackward(
      branch: m, scale: scale, outputGradient: outputGradient, branchGradient: branchGradient, scaleGradient: scaleGradient)
  }
  /// Composed from this backend's primitives, so that the MLP's GELU is recorded like any other.
  func residualMLP(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, into output: Tensor, saved: ResidualMLPSaved
  ) {
    composedResidualMLP(x, parameters: parameters, epsilon: epsilon, into: output, saved: saved)
  }
  func residualMLPBackward(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, saved: ResidualMLPSaved, outputGradient: Tensor,
    inputGradient: Tensor, gradients: ResidualMLPParameters
  ) {
    base.residualMLPBackward(
      x, parameters: parameters, epsilon: epsilon, saved: saved, outputGradient: outputGradient, inputGradient: inputGradient,
      gradients: gradients)
  }
  func depthwiseConvolution(_ x: Tensor, weight: Tensor, bias: Tensor?, into output: Tensor) {
    base.depthwiseConvolution(x, weight: weight, bias: bias, into: output)
  }
  func depthwiseConvolutionBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, inputGradient: Tensor?, weightGradient: Tensor,
    biasGradient: Tensor?
  ) {
    base.depthwiseConvolutionBackward(
      x, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient, weightGradient: weightGradient,
      biasGradient: biasGradient)
  }
  func quadraticDepthwiseConvolution(_ x: Tensor, weights: TensorTriple, biases: TensorTriple?, into output: Tensor) {
    base.quadraticDepthwiseConvolution(x, weights: weights, biases: biases, into: output)
  }
  func quadraticDepthwiseConvolutionBackward(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor?,
    weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    base.quadraticDepthwiseConvolutionBackward(
      x, weights: weights, biases: biases, outputGradient: outputGradient, inputGradient: inputGradient,
      weightGradients: weightGradients, biasGradients: biasGradients)
  }
  func normalizedQuadraticDepthwiseConvolution(
    _ x: Tensor, normalization: LayerNormParameters, weights: TensorTriple, biases: TensorTriple?, into output: Tensor,
    statistics: LayerNormStatistics
  ) {
    base.normalizedQuadraticDepthwiseConvolution(
      x, normalization: normalization, weights: weights, biases: biases, into: output, statistics: statistics)
  }
  func normalizedQuadraticDepthwiseConvolutionBackward(
    _ x: Tensor, normalization: LayerNormParameters, statistics: LayerNormStatistics, weights: TensorTriple,
    biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor, inputGradientAddend: Tensor?,
    normalizationGradients: (weight: Tensor, bias: Tensor), weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    base.normalizedQuadraticDepthwiseConvolutionBackward(
      x, normalization: normalization, statistics: statistics, weights: weights, biases: biases,
      outputGradient: outputGradient, inputGradient: inputGradient, inputGradientAddend: inputGradientAddend,
      normalizationGradients: normalizationGradients, weightGradients: weightGradients, biasGradients: biasGradients)
  }
  func convolution2D(_ x: Tensor, weight: Tensor, bias: Tensor?, geometry: Convolution2D.Geometry, into output: Tensor) {
    base.convolution2D(x, weight: weight, bias: bias, geometry: geometry, into: output)
  }
  func convolution2DBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, geometry: Convolution2D.Geometry, inputGradient: Tensor?,
    weightGradient: Tensor, biasGradient: Tensor?
  ) {
    base.convolution2DBackward(
      x, weight: weight, outputGradient: outputGradient, geometry: geometry, inputGradient: inputGradient,
      weightGradient: weightGradient, biasGradient: biasGradient)
  }
  func quadraticCombination(_ z: Tensor, into output: Tensor) { base.quadraticCombination(z, into: output) }
  func quadraticGradients(overwriting z: Tensor, outputGradient: Tensor) {
    base.quadraticGradients(overwriting: z, outputGradient: outputGradient)
  }
  func permute(_ x: Tensor, axes: [Int], into output: Tensor) { base.permute(x, axes: axes, into: output) }
  func adamWStep(_ step: AdamWStep, parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor) {
    base.adamWStep(step, parameter: parameter, gradient: gradient, firstMoment: firstMoment, secondMoment: secondMoment)
  }
  func sgdStep(_ step: SGDStep, parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?) {
    base.sgdStep(step, parameter: parameter, gradient: gradient, momentumBuffer: momentumBuffer)
  }
  func linearCombination(_ x: Tensor, scaledBy alpha: Float, adding y: Tensor, scaledBy beta: Float) {
    base.linearCombination(x, scaledBy: alpha, adding: y, scaledBy: beta)
  }
}

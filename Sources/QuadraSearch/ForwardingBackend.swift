import QuadraModels

/// A backend that computes everything with ``QuadraCore/CPUBackend``: the base of the recording backends
/// of the zero-cost proxies (``ActivationCodeRecorder`` for ``NASWOT``, ``FeatureMapRecorder`` for
/// ``MeCo``), which override the one or two ops whose outputs they read and call `super` for the result.
///
/// `@unchecked Sendable`: its stored properties are constants of Sendable types; subclasses keep their
/// mutable state behind a `Mutex`.
class ForwardingBackend: Backend, @unchecked Sendable {
  let name: String
  let device = Device.cpu
  let base = CPUBackend()

  init(name: String) { self.name = name }

  /// Runs `config`'s untrained network (weights from seed 0, evaluation mode, no gradient recording) on
  /// `images` with this backend, so that the overridden ops see every activation they read.
  ///
  /// - Throws: ``SearchSpaceError`` naming `proxy` when `images` is not `[N ≥ minimumImages, H, W, C]` with
  ///   the config's `C`, or does not fit the model.
  func recordForward(of config: ModelConfig, on images: Tensor, proxy: String, minimumImages: Int) throws {
    guard images.rank == 4, images.shape[0] >= minimumImages, images.shape[3] == config.inputChannels else {
      throw SearchSpaceError(
        field: "images",
        message: "\(proxy) needs a batch [N ≥ \(minimumImages), H, W, \(config.inputChannels)], got \(images.shape)")
    }
    try config.validate(resolution: images.shape[1])
    let model = try VisionModel(config: config, seed: 0)
    model.setTraining(false)
    ComputeContext.current.with(backend: self).run {
      GradientMode.withoutRecording { _ = model(Variable(images)) }
    }
  }

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
  func gelu(_ x: Tensor, bias: Tensor?, into output: Tensor) { base.gelu(x, bias: bias, into: output) }
  func geluBackward(_ x: Tensor, bias: Tensor?, outputGradient: Tensor, inputGradient: Tensor, biasGradient: Tensor?) {
    base.geluBackward(x, bias: bias, outputGradient: outputGradient, inputGradient: inputGradient, biasGradient: biasGradient)
  }
  func geluBackwardWithActivation(_ x: Tensor, gradient: Tensor, activated: Tensor, biasGradient: Tensor) {
    base.geluBackwardWithActivation(x, gradient: gradient, activated: activated, biasGradient: biasGradient)
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
  func residualMLP(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, into output: Tensor, saved: ResidualMLPSaved
  ) {
    base.residualMLP(x, parameters: parameters, epsilon: epsilon, into: output, saved: saved)
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

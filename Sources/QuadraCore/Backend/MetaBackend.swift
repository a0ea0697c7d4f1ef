import Synchronization

/// A backend that computes nothing but allocates exactly what ``CPUBackend`` allocates: running a
/// model's real forward, backward and optimizer step under it replays the engine's allocation
/// sequence with real shapes, so the ``MemoryTracker`` of the context ends with the same peak bytes
/// a real run would reach, in a small fraction of the time.
///
/// Two kinds of memory make up a run's peak:
/// - tensors the ops allocate (outputs, saved activations, gradients, optimizer state) come from
///   ``makeBuffer(count:)``: uninitialized storage that no primitive here ever touches;
/// - transient kernel workspace (``KernelScratch``: per-thread partial sums, packed weights, im2col
///   columns) that a CPU primitive allocates and frees inside the call.
///
/// The workspace depends only on the primitive, its operands' shapes and the thread count, so it is
/// *probed*: the first call of a primitive on given shapes runs the real ``CPUBackend`` kernel (on
/// the uninitialized operands, in its own tracker) and records the peak bytes it allocated; every
/// call then charges the current tracker that peak (an allocation and release of the same size),
/// which raises the tracker's peak exactly as the kernel's scratch would. Probing the real kernel,
/// rather than restating each kernel's workspace formula, keeps the replay exact when the kernels
/// change. A backend instance keeps its probes for its lifetime (thread-safe); share one to
/// amortize them.
///
/// Values read back are zeros (``sumAll(_:)``, losses, ``copy(_:from:toHost:)``): only code whose
/// allocations do not depend on tensor values replays exactly (every model and optimizer step does).
public final class MetaBackend: Backend {
  public let name = "meta"
  public let device: Device
  /// The backend whose kernels are probed for their workspace.
  private let probed: CPUBackend
  private let workspace = Mutex<[ProbeKey: Int]>([:])

  /// What determines a primitive's workspace: the primitive, its operands' shapes and scalar
  /// parameters (flattened, with separators), and the thread count.
  private struct ProbeKey: Hashable {
    var primitive: String
    var dimensions: [Int]
    var threads: Int
  }

  public init(device: Device = .cpu) {
    self.device = device
    probed = CPUBackend(device: device)
  }

  /// Distinct (primitive, shapes, threads) combinations probed so far.
  public var probeCount: Int { workspace.withLock { $0.count } }

  /// Charges the current tracker the workspace of `primitive` on these operands, probing `kernel`
  /// (the CPU primitive) on first use.
  private func charge(
    _ primitive: String, _ tensors: [Tensor?], _ parameters: [Int] = [], kernel: (CPUBackend) -> Void
  ) {
    let context = ComputeContext.current
    var dimensions = parameters
    dimensions.reserveCapacity(parameters.count + tensors.count * 5)
    for tensor in tensors {
      // -1 separates operands, -2 marks an absent optional one.
      dimensions.append(tensor == nil ? -2 : -1)
      if let tensor { dimensions.append(contentsOf: tensor.shape) }
    }
    let key = ProbeKey(primitive: primitive, dimensions: dimensions, threads: context.threadCount)
    let bytes: Int
    if let known = workspace.withLock({ $0[key] }) {
      bytes = known
    } else {
      let probe = MemoryTracker()
      context.with(memory: probe).with(backend: probed).run { kernel(probed) }
      bytes = probe.peakBytes
      workspace.withLock { $0[key] = bytes }
    }
    if bytes > 0 {
      context.memory.recordAllocation(byteCount: bytes)
      context.memory.recordRelease(byteCount: bytes)
    }
  }

  // MARK: Memory

  public func makeBuffer(count: Int) -> TensorBuffer { TensorBuffer(count: count, device: device) }

  public func copy(fromHost source: UnsafeBufferPointer<Float>, into destination: Tensor, at offset: Int) {}

  public func copy(_ source: Tensor, from offset: Int, toHost destination: UnsafeMutableBufferPointer<Float>) {
    destination.initialize(repeating: 0)
  }

  public func fill(_ tensor: Tensor, with value: Float) {
    charge("fill", [tensor]) { $0.fill(tensor, with: value) }
  }

  public func copyBlock(
    from source: Tensor, _ sourceBlock: StridedBlock, into destination: Tensor, _ destinationBlock: StridedBlock,
    rows: Int, width: Int
  ) {
    charge("copyBlock", [source, destination], [rows, width]) {
      $0.copyBlock(from: source, sourceBlock, into: destination, destinationBlock, rows: rows, width: width)
    }
  }

  public func gatherImages(
    from source: Tensor, indices: [Int], transforms: [ImageTransform]?, fill: Float, into output: Tensor
  ) {
    charge("gatherImages", [source, output], [indices.count, transforms == nil ? 0 : 1]) {
      $0.gatherImages(from: source, indices: indices, transforms: transforms, fill: fill, into: output)
    }
  }

  // MARK: Linear algebra

  public func matrixMultiply(_ a: Tensor, _ b: Tensor, _ product: MatrixProduct, columnBias: Tensor?, into c: Tensor) {
    let p = product
    charge(
      "matrixMultiply", [a, b, columnBias, c],
      [p.batch, p.m, p.n, p.k, p.transposeA ? 1 : 0, p.transposeB ? 1 : 0]
    ) { $0.matrixMultiply(a, b, product, columnBias: columnBias, into: c) }
  }

  // MARK: Elementwise and reductions

  public func binary(_ op: BinaryOperator, _ a: Tensor, _ b: Tensor, into output: Tensor) {
    let inPlace = a.buffer === output.buffer ? 1 : 0
    charge("binary." + op.rawValue, [a, b, output], [inPlace]) { $0.binary(op, a, b, into: output) }
  }

  public func sum(_ x: Tensor, keeping keep: [Bool], into output: Tensor) {
    charge("sum", [x, output], keep.map { $0 ? 1 : 0 }) { $0.sum(x, keeping: keep, into: output) }
  }

  public func sumOfProducts(_ a: Tensor, _ b: Tensor, into output: Tensor) {
    charge("sumOfProducts", [a, b, output]) { $0.sumOfProducts(a, b, into: output) }
  }

  public func sumAll(_ x: Tensor) -> Double {
    charge("sumAll", [x]) { _ = $0.sumAll(x) }
    return 0
  }

  public func squaredSum(_ x: Tensor) -> Double {
    charge("squaredSum", [x]) { _ = $0.squaredSum(x) }
    return 0
  }

  public func maxAbs(_ x: Tensor) -> Float {
    charge("maxAbs", [x]) { _ = $0.maxAbs(x) }
    return 0
  }

  public func argmaxRows(_ x: Tensor) -> [Int] {
    charge("argmaxRows", [x]) { _ = $0.argmaxRows(x) }
    let rows = x.shape.last.map { $0 == 0 ? 0 : x.count / $0 } ?? 1
    return [Int](repeating: 0, count: rows)
  }

  // MARK: Activations, normalization, loss

  public func gelu(_ x: Tensor, bias: Tensor?, into output: Tensor) {
    charge("gelu", [x, bias, output]) { $0.gelu(x, bias: bias, into: output) }
  }

  public func geluBackward(
    _ x: Tensor, bias: Tensor?, outputGradient: Tensor, inputGradient: Tensor, biasGradient: Tensor?
  ) {
    charge("geluBackward", [x, bias, outputGradient, inputGradient, biasGradient]) {
      $0.geluBackward(
        x, bias: bias, outputGradient: outputGradient, inputGradient: inputGradient, biasGradient: biasGradient)
    }
  }

  public func softmax(_ x: Tensor, into output: Tensor) {
    charge("softmax", [x, output]) { $0.softmax(x, into: output) }
  }

  public func softmaxCrossEntropy(_ logits: Tensor, labels: [Int], labelSmoothing: Float, probabilities: Tensor) -> Double {
    charge("softmaxCrossEntropy", [logits, probabilities]) {
      _ = $0.softmaxCrossEntropy(logits, labels: labels, labelSmoothing: labelSmoothing, probabilities: probabilities)
    }
    return 0
  }

  public func softmaxCrossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing: Float, scale: Float, into gradient: Tensor
  ) {
    charge("softmaxCrossEntropyBackward", [probabilities, gradient]) {
      $0.softmaxCrossEntropyBackward(
        probabilities: probabilities, labels: labels, labelSmoothing: labelSmoothing, scale: scale, into: gradient)
    }
  }

  public func layerNorm(
    _ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float, into output: Tensor, mean: Tensor,
    inverseStandardDeviation: Tensor
  ) {
    charge("layerNorm", [x, weight, bias, output, mean, inverseStandardDeviation]) {
      $0.layerNorm(
        x, weight: weight, bias: bias, epsilon: epsilon, into: output, mean: mean,
        inverseStandardDeviation: inverseStandardDeviation)
    }
  }

  public func layerNormBackward(
    _ x: Tensor, outputGradient: Tensor, weight: Tensor, mean: Tensor, inverseStandardDeviation: Tensor,
    inputGradient: Tensor, weightGradient: Tensor, biasGradient: Tensor
  ) {
    charge(
      "layerNormBackward",
      [x, outputGradient, weight, mean, inverseStandardDeviation, inputGradient, weightGradient, biasGradient]
    ) {
      $0.layerNormBackward(
        x, outputGradient: outputGradient, weight: weight, mean: mean, inverseStandardDeviation: inverseStandardDeviation,
        inputGradient: inputGradient, weightGradient: weightGradient, biasGradient: biasGradient)
    }
  }

  // MARK: Convolutions

  public func depthwiseConvolution(_ x: Tensor, weight: Tensor, bias: Tensor?, into output: Tensor) {
    charge("depthwiseConvolution", [x, weight, bias, output]) {
      $0.depthwiseConvolution(x, weight: weight, bias: bias, into: output)
    }
  }

  public func depthwiseConvolutionBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, inputGradient: Tensor?, weightGradient: Tensor,
    biasGradient: Tensor?
  ) {
    charge("depthwiseConvolutionBackward", [x, weight, outputGradient, inputGradient, weightGradient, biasGradient]) {
      $0.depthwiseConvolutionBackward(
        x, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient,
        weightGradient: weightGradient, biasGradient: biasGradient)
    }
  }

  public func quadraticDepthwiseConvolution(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, into output: Tensor
  ) {
    charge("quadraticDepthwiseConvolution", [x, weights.0, biases?.0, output]) {
      $0.quadraticDepthwiseConvolution(x, weights: weights, biases: biases, into: output)
    }
  }

  public func quadraticDepthwiseConvolutionBackward(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor?,
    weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    charge(
      "quadraticDepthwiseConvolutionBackward", [x, weights.0, biases?.0, outputGradient, inputGradient, biasGradients?.0]
    ) {
      $0.quadraticDepthwiseConvolutionBackward(
        x, weights: weights, biases: biases, outputGradient: outputGradient, inputGradient: inputGradient,
        weightGradients: weightGradients, biasGradients: biasGradients)
    }
  }

  public func convolution2D(
    _ x: Tensor, weight: Tensor, bias: Tensor?, geometry: Convolution2D.Geometry, into output: Tensor
  ) {
    charge("convolution2D", [x, weight, bias, output], Self.parameters(of: geometry)) {
      $0.convolution2D(x, weight: weight, bias: bias, geometry: geometry, into: output)
    }
  }

  public func convolution2DBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, geometry: Convolution2D.Geometry, inputGradient: Tensor?,
    weightGradient: Tensor, biasGradient: Tensor?
  ) {
    charge(
      "convolution2DBackward", [x, weight, outputGradient, inputGradient, weightGradient, biasGradient],
      Self.parameters(of: geometry)
    ) {
      $0.convolution2DBackward(
        x, weight: weight, outputGradient: outputGradient, geometry: geometry, inputGradient: inputGradient,
        weightGradient: weightGradient, biasGradient: biasGradient)
    }
  }

  public func quadraticCombination(_ z: Tensor, into output: Tensor) {
    charge("quadraticCombination", [z, output]) { $0.quadraticCombination(z, into: output) }
  }

  public func quadraticGradients(overwriting z: Tensor, outputGradient: Tensor) {
    charge("quadraticGradients", [z, outputGradient]) { $0.quadraticGradients(overwriting: z, outputGradient: outputGradient) }
  }

  // MARK: Layout

  public func permute(_ x: Tensor, axes: [Int], into output: Tensor) {
    charge("permute", [x, output], axes) { $0.permute(x, axes: axes, into: output) }
  }

  // MARK: Parameter updates

  public func adamWStep(_ step: AdamWStep, parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor) {
    charge("adamWStep", [parameter, gradient, firstMoment, secondMoment]) {
      $0.adamWStep(step, parameter: parameter, gradient: gradient, firstMoment: firstMoment, secondMoment: secondMoment)
    }
  }

  public func sgdStep(_ step: SGDStep, parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?) {
    charge("sgdStep", [parameter, gradient, momentumBuffer], [step.momentum == 0 ? 0 : 1, step.nesterov ? 1 : 0]) {
      $0.sgdStep(step, parameter: parameter, gradient: gradient, momentumBuffer: momentumBuffer)
    }
  }

  public func linearCombination(_ x: Tensor, scaledBy alpha: Float, adding y: Tensor, scaledBy beta: Float) {
    charge("linearCombination", [x, y]) { $0.linearCombination(x, scaledBy: alpha, adding: y, scaledBy: beta) }
  }

  private static func parameters(of g: Convolution2D.Geometry) -> [Int] {
    [g.strideHeight, g.strideWidth, g.paddingHeight, g.paddingWidth, g.kernelHeight, g.kernelWidth]
  }
}

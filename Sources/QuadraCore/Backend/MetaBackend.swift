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
/// rather than restating each kernel's workspace formula, keeps the replay exact when the sizes
/// change. A backend instance keeps its probes for its lifetime (thread-safe); share one to
/// amortize them.
///
/// Only the primitives whose CPU kernels take tracked workspace are probed: the reductions
/// (``sum(_:keeping:into:)``, ``sumOfProducts(_:_:into:)``, the bias gradient of
/// ``geluBackward(_:bias:outputGradient:inputGradient:biasGradient:)``, the weight and bias
/// gradients of ``layerNormBackward(_:outputGradient:weight:mean:inverseStandardDeviation:inputGradient:inputGradientAddend:weightGradient:biasGradient:)``:
/// per-chunk partial sums), the depth-sliced matrix products (per-slice partial products: the
/// weight gradients once batch × pixels is deep, e.g. 7×7 maps at batch 64) and the convolutions
/// (packed weights, rings, im2col columns). The others (GEMM's packing buffers are per-thread and
/// untracked) are replayed as allocation-free: probing them would run every matrix product of a
/// network for real once per shape. A kernel that starts taking tracked workspace must
/// be probed here; the search's exact-memory tests (prediction == measured peak) catch one that is not.
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

  public func fill(_ tensor: Tensor, with value: Float) {}

  public func copyBlock(
    from source: Tensor, _ sourceBlock: StridedBlock, into destination: Tensor, _ destinationBlock: StridedBlock,
    rows: Int, width: Int
  ) {}

  public func gatherImages(
    from source: Tensor, indices: [Int], transforms: [ImageTransform]?, fill: Float, into output: Tensor
  ) {}

  // The primitives below without a body take no tracked workspace on the CPU (see the type's comment).

  // MARK: Linear algebra

  /// Only deep, narrow products (weight gradients at large batch × pixels) take tracked workspace on
  /// the CPU: one partial product per depth slice. Those are probed; the others allocate nothing
  /// tracked (GEMM's packing buffers are per-thread and untracked), and probing them would run
  /// every product of a network for real.
  public func matrixMultiply(_ a: Tensor, _ b: Tensor, _ product: MatrixProduct, columnBias: Tensor?, into c: Tensor) {
    guard CPUBackend.depthSlices(product) != nil else { return }
    let parameters = [product.batch, product.m, product.n, product.k, product.transposeA ? 1 : 0, product.transposeB ? 1 : 0]
    charge("matrixMultiply", [a, b, columnBias, c], parameters) {
      $0.matrixMultiply(a, b, product, columnBias: columnBias, into: c)
    }
  }

  // MARK: Elementwise and reductions

  public func binary(_ op: BinaryOperator, _ a: Tensor, _ b: Tensor, into output: Tensor) {}

  public func sum(_ x: Tensor, keeping keep: [Bool], into output: Tensor) {
    charge("sum", [x, output], keep.map { $0 ? 1 : 0 }) { $0.sum(x, keeping: keep, into: output) }
  }

  public func sumOfProducts(_ a: Tensor, _ b: Tensor, into output: Tensor) {
    charge("sumOfProducts", [a, b, output]) { $0.sumOfProducts(a, b, into: output) }
  }

  public func sumAll(_ x: Tensor) -> Double {
    0
  }

  public func squaredSum(_ x: Tensor) -> Double {
    0
  }

  public func maxAbs(_ x: Tensor) -> Float {
    0
  }

  public func argmaxRows(_ x: Tensor) -> [Int] {
    let rows = x.shape.last.map { $0 == 0 ? 0 : x.count / $0 } ?? 1
    return [Int](repeating: 0, count: rows)
  }

  // MARK: Activations, normalization, loss

  public func gelu(_ x: Tensor, bias: Tensor?, into output: Tensor) {}

  public func geluBackward(
    _ x: Tensor, bias: Tensor?, outputGradient: Tensor, inputGradient: Tensor, biasGradient: Tensor?
  ) {
    charge("geluBackward", [x, bias, outputGradient, inputGradient, biasGradient]) {
      $0.geluBackward(
        x, bias: bias, outputGradient: outputGradient, inputGradient: inputGradient, biasGradient: biasGradient)
    }
  }

  public func softmax(_ x: Tensor, into output: Tensor) {}

  public func softmaxCrossEntropy(_ logits: Tensor, labels: [Int], labelSmoothing: Float, probabilities: Tensor) -> Double {
    0
  }

  public func softmaxCrossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing: Float, scale: Float, into gradient: Tensor
  ) {}

  public func layerNorm(
    _ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float, into output: Tensor, mean: Tensor,
    inverseStandardDeviation: Tensor
  ) {}

  public func layerNormBackward(
    _ x: Tensor, outputGradient: Tensor, weight: Tensor, mean: Tensor, inverseStandardDeviation: Tensor,
    inputGradient: Tensor, inputGradientAddend: Tensor?, weightGradient: Tensor, biasGradient: Tensor
  ) {
    charge("layerNormBackward", [x, weight]) {
      $0.layerNormBackward(
        x, outputGradient: outputGradient, weight: weight, mean: mean, inverseStandardDeviation: inverseStandardDeviation,
        inputGradient: inputGradient, inputGradientAddend: inputGradientAddend, weightGradient: weightGradient,
        biasGradient: biasGradient)
    }
  }

  public func layerScaleResidual(_ x: Tensor, branch m: Tensor, scale: Tensor, into output: Tensor) {}

  /// Probed: the CPU kernel sums ∂γ in per-chunk partials.
  public func layerScaleResidualBackward(
    branch m: Tensor, scale: Tensor, outputGradient: Tensor, branchGradient: Tensor, scaleGradient: Tensor
  ) {
    charge("layerScaleResidualBackward", [m, scale]) {
      $0.layerScaleResidualBackward(
        branch: m, scale: scale, outputGradient: outputGradient, branchGradient: branchGradient,
        scaleGradient: scaleGradient)
    }
  }

  /// Probed: the CPU kernel takes per-thread block scratch and per-chunk gradient partials.
  public func residualMLP(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, into output: Tensor, saved: ResidualMLPSaved
  ) {
    charge("residualMLP", [x] + parameters.all) {
      $0.residualMLP(x, parameters: parameters, epsilon: epsilon, into: output, saved: saved)
    }
  }

  public func residualMLPBackward(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, saved: ResidualMLPSaved, outputGradient: Tensor,
    inputGradient: Tensor, gradients: ResidualMLPParameters
  ) {
    charge("residualMLPBackward", [x] + parameters.all) {
      $0.residualMLPBackward(
        x, parameters: parameters, epsilon: epsilon, saved: saved, outputGradient: outputGradient, inputGradient: inputGradient,
        gradients: gradients)
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

  public func normalizedQuadraticDepthwiseConvolution(
    _ x: Tensor, normalization: LayerNormParameters, weights: TensorTriple, biases: TensorTriple?, into output: Tensor,
    statistics: LayerNormStatistics
  ) {
    charge("normalizedQuadraticDepthwiseConvolution", [x, weights.0, biases?.0, output]) {
      $0.normalizedQuadraticDepthwiseConvolution(
        x, normalization: normalization, weights: weights, biases: biases, into: output, statistics: statistics)
    }
  }

  public func normalizedQuadraticDepthwiseConvolutionBackward(
    _ x: Tensor, normalization: LayerNormParameters, statistics: LayerNormStatistics, weights: TensorTriple,
    biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor, inputGradientAddend: Tensor?,
    normalizationGradients: (weight: Tensor, bias: Tensor), weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    charge("normalizedQuadraticDepthwiseConvolutionBackward", [x, weights.0, biases?.0, outputGradient]) {
      $0.normalizedQuadraticDepthwiseConvolutionBackward(
        x, normalization: normalization, statistics: statistics, weights: weights, biases: biases,
        outputGradient: outputGradient, inputGradient: inputGradient, inputGradientAddend: inputGradientAddend,
        normalizationGradients: normalizationGradients, weightGradients: weightGradients, biasGradients: biasGradients)
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

  public func quadraticCombination(_ z: Tensor, into output: Tensor) {}

  public func quadraticGradients(overwriting z: Tensor, outputGradient: Tensor) {}

  // MARK: Layout

  public func permute(_ x: Tensor, axes: [Int], into output: Tensor) {}

  // MARK: Parameter updates

  public func adamWStep(_ step: AdamWStep, parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor) {}

  public func sgdStep(_ step: SGDStep, parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?) {}

  public func linearCombination(_ x: Tensor, scaledBy alpha: Float, adding y: Tensor, scaledBy beta: Float) {}

  private static func parameters(of g: Convolution2D.Geometry) -> [Int] {
    [g.strideHeight, g.strideWidth, g.paddingHeight, g.paddingWidth, g.kernelHeight, g.kernelWidth]
  }
}

import Dispatch
import Synchronization

/// A ``Backend`` decorator that times every primitive it forwards to another backend (the
/// `ggml` per-op profile): calls, wall time, floating-point operations and bytes moved, per
/// phase of a training step.
///
/// Install it only while profiling, through the context: nothing else changes and code outside
/// the profiled region keeps calling the undecorated backend, so profiling costs nothing when off.
///
/// ```swift
/// let profiler = ProfilingBackend(wrapping: CPUBackend())
/// try ComputeContext.current.with(backend: profiler).run {
///   profiler.recording(.forward) { loss = model(x).softmaxCrossEntropy(labels: y) }
///   try profiler.recording(.backward) { try loss.backward() }
/// }
/// let rows = profiler.entries  // per (phase, primitive): calls, seconds, FLOPs, bytes
/// ```
///
/// Times are measured on the calling thread around the forwarded call, so a primitive's time
/// includes its own thread dispatch and the wait for its slowest worker. Primitives that call
/// other primitives of the wrapped backend internally are counted once (the inner calls do not
/// pass through the decorator). Work estimates (``Entry/floatingPointOperations``,
/// ``Entry/bytes``) are the nominal counts of the op: `2·m·n·k` for a product, `2·k²` per output
/// element and channel for a depthwise convolution, and 4 bytes per element read or written once.
public final class ProfilingBackend: Backend {
  /// The part of a training step a primitive ran in.
  public enum Phase: String, Sendable, Codable, CaseIterable, Comparable {
    case forward, backward, optimizer, other

    public static func < (lhs: Phase, rhs: Phase) -> Bool {
      allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
  }

  /// The totals of one primitive in one phase.
  public struct Entry: Sendable, Equatable, Codable {
    public var phase: Phase
    /// The primitive's name (`matrixMultiply`, `binary.add`, `layerNormBackward`, …).
    public var primitive: String
    public var calls: Int
    public var seconds: Double
    /// Nominal floating-point operations of all calls (0 for pure data movement).
    public var floatingPointOperations: Double
    /// Nominal bytes read and written by all calls.
    public var bytes: Double

    /// `floatingPointOperations / seconds / 10⁹`.
    public var gigaflopsPerSecond: Double { seconds > 0 ? floatingPointOperations / seconds / 1e9 : 0 }
    /// `bytes / seconds / 10⁹`.
    public var gigabytesPerSecond: Double { seconds > 0 ? bytes / seconds / 1e9 : 0 }

    enum CodingKeys: String, CodingKey {
      case phase, primitive, calls, seconds
      case floatingPointOperations = "flops"
      case bytes
    }
  }

  private struct Key: Hashable {
    var phase: Phase
    var primitive: String
  }

  private struct State {
    var phase: Phase = .other
    var totals: [Key: Entry] = [:]
  }

  /// The backend that computes.
  public let wrapped: any Backend
  private let state = Mutex(State())

  public var name: String { wrapped.name }
  public var device: Device { wrapped.device }

  /// - Parameter wrapped: the backend whose primitives are timed.
  public init(wrapping wrapped: any Backend) {
    self.wrapped = wrapped
  }

  /// Runs `body` with primitives attributed to `phase` (restores the previous phase afterwards).
  public func recording<R>(_ phase: Phase, _ body: () throws -> R) rethrows -> R {
    let previous = state.withLock { state in
      defer { state.phase = phase }
      return state.phase
    }
    defer { state.withLock { $0.phase = previous } }
    return try body()
  }

  /// The totals so far, sorted by phase, then by time (largest first).
  public var entries: [Entry] {
    state.withLock { Array($0.totals.values) }.sorted {
      $0.phase != $1.phase ? $0.phase < $1.phase : ($0.seconds != $1.seconds ? $0.seconds > $1.seconds : $0.primitive < $1.primitive)
    }
  }

  /// Forgets all totals.
  public func reset() {
    state.withLock { $0.totals.removeAll() }
  }

  /// Forwards one primitive call and adds its time and nominal work to the totals.
  @inline(__always)
  private func timed<R>(
    _ primitive: @autoclosure () -> String, flops: @autoclosure () -> Double = 0, bytes: @autoclosure () -> Double,
    _ body: () -> R
  ) -> R {
    let start = DispatchTime.now().uptimeNanoseconds
    let result = body()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
    let name = primitive(), flops = flops(), bytes = bytes()
    state.withLock { state in
      let key = Key(phase: state.phase, primitive: name)
      var entry =
        state.totals[key]
        ?? Entry(phase: state.phase, primitive: name, calls: 0, seconds: 0, floatingPointOperations: 0, bytes: 0)
      entry.calls += 1
      entry.seconds += seconds
      entry.floatingPointOperations += flops
      entry.bytes += bytes
      state.totals[key] = entry
    }
    return result
  }

  /// Bytes of `elements` floats.
  private static func bytes(_ elements: Int...) -> Double { Double(elements.reduce(0, +)) * 4 }

  // MARK: Memory

  public func makeBuffer(count: Int) -> TensorBuffer {
    timed("makeBuffer", bytes: 0) { wrapped.makeBuffer(count: count) }
  }

  public func copy(fromHost source: UnsafeBufferPointer<Float>, into destination: Tensor, at offset: Int) {
    timed("copyFromHost", bytes: Self.bytes(source.count, source.count)) {
      wrapped.copy(fromHost: source, into: destination, at: offset)
    }
  }

  public func copy(_ source: Tensor, from offset: Int, toHost destination: UnsafeMutableBufferPointer<Float>) {
    timed("copyToHost", bytes: Self.bytes(destination.count, destination.count)) {
      wrapped.copy(source, from: offset, toHost: destination)
    }
  }

  public func fill(_ tensor: Tensor, with value: Float) {
    timed("fill", bytes: Self.bytes(tensor.count)) { wrapped.fill(tensor, with: value) }
  }

  public func copyBlock(
    from source: Tensor, _ sourceBlock: StridedBlock, into destination: Tensor, _ destinationBlock: StridedBlock,
    rows: Int, width: Int
  ) {
    timed("copyBlock", bytes: Self.bytes(rows * width, rows * width)) {
      wrapped.copyBlock(
        from: source, sourceBlock, into: destination, destinationBlock, rows: rows, width: width)
    }
  }

  public func gatherImages(
    from source: Tensor, indices: [Int], transforms: [ImageTransform]?, fill: Float, into output: Tensor
  ) {
    timed("gatherImages", bytes: Self.bytes(output.count, output.count)) {
      wrapped.gatherImages(from: source, indices: indices, transforms: transforms, fill: fill, into: output)
    }
  }

  // MARK: Linear algebra

  public func matrixMultiply(_ a: Tensor, _ b: Tensor, _ product: MatrixProduct, columnBias: Tensor?, into c: Tensor) {
    timed(
      "matrixMultiply", flops: 2 * Double(product.multiplyAdds), bytes: Self.bytes(a.count, b.count, c.count)
    ) {
      wrapped.matrixMultiply(a, b, product, columnBias: columnBias, into: c)
    }
  }

  // MARK: Elementwise and reductions

  public func binary(_ op: BinaryOperator, _ a: Tensor, _ b: Tensor, into output: Tensor) {
    timed(
      "binary.\(op.rawValue)", flops: op == .second ? 0 : Double(output.count),
      bytes: Self.bytes(op == .second ? 0 : a.count, b.count, output.count)
    ) {
      wrapped.binary(op, a, b, into: output)
    }
  }

  public func sum(_ x: Tensor, keeping keep: [Bool], into output: Tensor) {
    timed("sum", flops: Double(x.count), bytes: Self.bytes(x.count, output.count)) {
      wrapped.sum(x, keeping: keep, into: output)
    }
  }

  public func sumOfProducts(_ a: Tensor, _ b: Tensor, into output: Tensor) {
    timed("sumOfProducts", flops: 2 * Double(a.count), bytes: Self.bytes(a.count, b.count, output.count)) {
      wrapped.sumOfProducts(a, b, into: output)
    }
  }

  public func sumAll(_ x: Tensor) -> Double {
    timed("sumAll", flops: Double(x.count), bytes: Self.bytes(x.count)) { wrapped.sumAll(x) }
  }

  public func squaredSum(_ x: Tensor) -> Double {
    timed("squaredSum", flops: 2 * Double(x.count), bytes: Self.bytes(x.count)) { wrapped.squaredSum(x) }
  }

  public func maxAbs(_ x: Tensor) -> Float {
    timed("maxAbs", flops: Double(x.count), bytes: Self.bytes(x.count)) { wrapped.maxAbs(x) }
  }

  public func argmaxRows(_ x: Tensor) -> [Int] {
    timed("argmaxRows", flops: Double(x.count), bytes: Self.bytes(x.count)) { wrapped.argmaxRows(x) }
  }

  // MARK: Activations, normalization, loss

  public func gelu(_ x: Tensor, bias: Tensor?, into output: Tensor) {
    timed(bias == nil ? "gelu" : "biasGELU", bytes: Self.bytes(x.count, output.count)) {
      wrapped.gelu(x, bias: bias, into: output)
    }
  }

  public func geluBackward(
    _ x: Tensor, bias: Tensor?, outputGradient: Tensor, inputGradient: Tensor, biasGradient: Tensor?
  ) {
    timed(bias == nil ? "geluBackward" : "biasGELUBackward", bytes: Self.bytes(x.count, x.count, x.count)) {
      wrapped.geluBackward(
        x, bias: bias, outputGradient: outputGradient, inputGradient: inputGradient, biasGradient: biasGradient)
    }
  }

  public func geluBackwardWithActivation(_ x: Tensor, gradient: Tensor, activated: Tensor, biasGradient: Tensor) {
    timed("geluBackwardWithActivation", bytes: Self.bytes(x.count, gradient.count, gradient.count, activated.count)) {
      wrapped.geluBackwardWithActivation(x, gradient: gradient, activated: activated, biasGradient: biasGradient)
    }
  }

  public func softmax(_ x: Tensor, into output: Tensor) {
    timed("softmax", bytes: Self.bytes(x.count, output.count)) { wrapped.softmax(x, into: output) }
  }

  public func softmaxCrossEntropy(_ logits: Tensor, labels: [Int], labelSmoothing: Float, probabilities: Tensor)
    -> Double
  {
    timed("softmaxCrossEntropy", bytes: Self.bytes(logits.count, probabilities.count)) {
      wrapped.softmaxCrossEntropy(logits, labels: labels, labelSmoothing: labelSmoothing, probabilities: probabilities)
    }
  }

  public func softmaxCrossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing: Float, scale: Float, into gradient: Tensor
  ) {
    timed("softmaxCrossEntropyBackward", bytes: Self.bytes(probabilities.count, gradient.count)) {
      wrapped.softmaxCrossEntropyBackward(
        probabilities: probabilities, labels: labels, labelSmoothing: labelSmoothing, scale: scale, into: gradient)
    }
  }

  public func layerNorm(
    _ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float, into output: Tensor, mean: Tensor,
    inverseStandardDeviation: Tensor
  ) {
    // Statistics (3 ops per element) and the affine normalization (3 more).
    timed("layerNorm", flops: 6 * Double(x.count), bytes: Self.bytes(x.count, output.count)) {
      wrapped.layerNorm(
        x, weight: weight, bias: bias, epsilon: epsilon, into: output, mean: mean,
        inverseStandardDeviation: inverseStandardDeviation)
    }
  }

  public func layerNormBackward(
    _ x: Tensor, outputGradient: Tensor, weight: Tensor, mean: Tensor, inverseStandardDeviation: Tensor,
    inputGradient: Tensor, inputGradientAddend: Tensor?, weightGradient: Tensor, biasGradient: Tensor
  ) {
    timed(
      "layerNormBackward", flops: 14 * Double(x.count),
      bytes: Self.bytes(x.count, outputGradient.count, inputGradient.count, inputGradientAddend?.count ?? 0)
    ) {
      wrapped.layerNormBackward(
        x, outputGradient: outputGradient, weight: weight, mean: mean, inverseStandardDeviation: inverseStandardDeviation,
        inputGradient: inputGradient, inputGradientAddend: inputGradientAddend, weightGradient: weightGradient,
        biasGradient: biasGradient)
    }
  }

  public func layerScaleResidual(_ x: Tensor, branch m: Tensor, scale: Tensor, into output: Tensor) {
    timed("layerScaleResidual", flops: 2 * Double(x.count), bytes: Self.bytes(x.count, m.count, scale.count, output.count)) {
      wrapped.layerScaleResidual(x, branch: m, scale: scale, into: output)
    }
  }

  public func layerScaleResidualBackward(
    branch m: Tensor, scale: Tensor, outputGradient: Tensor, branchGradient: Tensor, scaleGradient: Tensor
  ) {
    timed(
      "layerScaleResidualBackward", flops: 3 * Double(m.count),
      bytes: Self.bytes(m.count, scale.count, outputGradient.count, branchGradient.count, scaleGradient.count)
    ) {
      wrapped.layerScaleResidualBackward(
        branch: m, scale: scale, outputGradient: outputGradient, branchGradient: branchGradient,
        scaleGradient: scaleGradient)
    }
  }

  public func residualMLP(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, into output: Tensor, saved: ResidualMLPSaved
  ) {
    let (rows, h) = (saved.mean.count, parameters.expandBias.count)
    timed(
      "residualMLP", flops: 4 * Double(rows * h * parameters.scale.count),
      bytes: Self.bytes(x.count, output.count, saved.hidden.count, saved.mlpOutput.count)
    ) {
      wrapped.residualMLP(x, parameters: parameters, epsilon: epsilon, into: output, saved: saved)
    }
  }

  public func residualMLPBackward(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, saved: ResidualMLPSaved, outputGradient: Tensor,
    inputGradient: Tensor, gradients: ResidualMLPParameters
  ) {
    let (rows, h) = (saved.mean.count, parameters.expandBias.count)
    timed(
      "residualMLPBackward", flops: 8 * Double(rows * h * parameters.scale.count),
      bytes: Self.bytes(x.count, outputGradient.count, inputGradient.count, saved.hidden.count, saved.mlpOutput.count)
    ) {
      wrapped.residualMLPBackward(
        x, parameters: parameters, epsilon: epsilon, saved: saved, outputGradient: outputGradient, inputGradient: inputGradient,
        gradients: gradients)
    }
  }

  // MARK: Convolutions

  /// `2·k²` operations per output element of a depthwise convolution with a `k × k` kernel.
  private static func depthwiseFLOPs(_ x: Tensor, kernel: Tensor) -> Double {
    2 * Double(x.count) * Double(kernel.shape[0] * kernel.shape[1])
  }

  public func depthwiseConvolution(_ x: Tensor, weight: Tensor, bias: Tensor?, into output: Tensor) {
    timed(
      "depthwiseConvolution", flops: Self.depthwiseFLOPs(x, kernel: weight), bytes: Self.bytes(x.count, output.count)
    ) {
      wrapped.depthwiseConvolution(x, weight: weight, bias: bias, into: output)
    }
  }

  public func depthwiseConvolutionBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, inputGradient: Tensor?, weightGradient: Tensor,
    biasGradient: Tensor?
  ) {
    let passes = inputGradient == nil ? 1.0 : 2.0
    timed(
      "depthwiseConvolutionBackward", flops: passes * Self.depthwiseFLOPs(x, kernel: weight),
      bytes: Self.bytes(x.count, outputGradient.count, inputGradient?.count ?? 0)
    ) {
      wrapped.depthwiseConvolutionBackward(
        x, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient, weightGradient: weightGradient,
        biasGradient: biasGradient)
    }
  }

  public func quadraticDepthwiseConvolution(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, into output: Tensor
  ) {
    timed(
      "quadraticDepthwiseConvolution", flops: 3 * Self.depthwiseFLOPs(x, kernel: weights.0),
      bytes: Self.bytes(x.count, output.count)
    ) {
      wrapped.quadraticDepthwiseConvolution(x, weights: weights, biases: biases, into: output)
    }
  }

  public func quadraticDepthwiseConvolutionBackward(
    _ x: Tensor, weights: TensorTriple, biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor?,
    weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    // Recomputing a and b (2 convolutions), three weight gradients, and three input gradients.
    let passes = inputGradient == nil ? 5.0 : 8.0
    timed(
      "quadraticDepthwiseConvolutionBackward", flops: passes * Self.depthwiseFLOPs(x, kernel: weights.0),
      bytes: Self.bytes(x.count, outputGradient.count, inputGradient?.count ?? 0)
    ) {
      wrapped.quadraticDepthwiseConvolutionBackward(
        x, weights: weights, biases: biases, outputGradient: outputGradient, inputGradient: inputGradient,
        weightGradients: weightGradients, biasGradients: biasGradients)
    }
  }

  public func normalizedQuadraticDepthwiseConvolution(
    _ x: Tensor, normalization: LayerNormParameters, weights: TensorTriple, biases: TensorTriple?, into output: Tensor,
    statistics: LayerNormStatistics
  ) {
    timed(
      "normalizedQuadraticDepthwiseConvolution", flops: 3 * Self.depthwiseFLOPs(x, kernel: weights.0),
      bytes: Self.bytes(x.count, output.count)
    ) {
      wrapped.normalizedQuadraticDepthwiseConvolution(
        x, normalization: normalization, weights: weights, biases: biases, into: output, statistics: statistics)
    }
  }

  public func normalizedQuadraticDepthwiseConvolutionBackward(
    _ x: Tensor, normalization: LayerNormParameters, statistics: LayerNormStatistics, weights: TensorTriple,
    biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor, inputGradientAddend: Tensor?,
    normalizationGradients: (weight: Tensor, bias: Tensor), weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    timed(
      "normalizedQuadraticDepthwiseConvolutionBackward", flops: 8 * Self.depthwiseFLOPs(x, kernel: weights.0),
      bytes: Self.bytes(x.count, outputGradient.count, inputGradient.count, inputGradientAddend?.count ?? 0)
    ) {
      wrapped.normalizedQuadraticDepthwiseConvolutionBackward(
        x, normalization: normalization, statistics: statistics, weights: weights, biases: biases,
        outputGradient: outputGradient, inputGradient: inputGradient, inputGradientAddend: inputGradientAddend,
        normalizationGradients: normalizationGradients, weightGradients: weightGradients, biasGradients: biasGradients)
    }
  }

  public func convolution2D(
    _ x: Tensor, weight: Tensor, bias: Tensor?, geometry: Convolution2D.Geometry, into output: Tensor
  ) {
    timed(
      "convolution2D", flops: 2 * Double(output.count) * Double(weight.count / Swift.max(geometry.outputChannels, 1)),
      bytes: Self.bytes(x.count, weight.count, output.count)
    ) {
      wrapped.convolution2D(x, weight: weight, bias: bias, geometry: geometry, into: output)
    }
  }

  public func convolution2DBackward(
    _ x: Tensor, weight: Tensor, outputGradient: Tensor, geometry: Convolution2D.Geometry, inputGradient: Tensor?,
    weightGradient: Tensor, biasGradient: Tensor?
  ) {
    let passes = inputGradient == nil ? 1.0 : 2.0
    let forwardFLOPs = 2 * Double(outputGradient.count) * Double(weight.count / Swift.max(geometry.outputChannels, 1))
    timed(
      "convolution2DBackward", flops: passes * forwardFLOPs,
      bytes: Self.bytes(x.count, outputGradient.count, inputGradient?.count ?? 0, weight.count)
    ) {
      wrapped.convolution2DBackward(
        x, weight: weight, outputGradient: outputGradient, geometry: geometry, inputGradient: inputGradient,
        weightGradient: weightGradient, biasGradient: biasGradient)
    }
  }

  public func quadraticCombination(_ z: Tensor, into output: Tensor) {
    timed("quadraticCombination", flops: 2 * Double(output.count), bytes: Self.bytes(z.count, output.count)) {
      wrapped.quadraticCombination(z, into: output)
    }
  }

  public func quadraticGradients(overwriting z: Tensor, outputGradient: Tensor) {
    timed(
      "quadraticGradients", flops: 2 * Double(outputGradient.count),
      bytes: Self.bytes(z.count, z.count, outputGradient.count)
    ) {
      wrapped.quadraticGradients(overwriting: z, outputGradient: outputGradient)
    }
  }

  // MARK: Layout

  public func permute(_ x: Tensor, axes: [Int], into output: Tensor) {
    timed("permute", bytes: Self.bytes(x.count, output.count)) { wrapped.permute(x, axes: axes, into: output) }
  }

  // MARK: Parameter updates

  public func adamWStep(
    _ step: AdamWStep, parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor
  ) {
    // Reads θ, g, m, v and writes θ, m, v; about 12 operations per element.
    timed("adamWStep", flops: 12 * Double(parameter.count), bytes: Self.bytes(parameter.count) * 7) {
      wrapped.adamWStep(
        step, parameter: parameter, gradient: gradient, firstMoment: firstMoment, secondMoment: secondMoment)
    }
  }

  public func adamWSteps(_ updates: [AdamWUpdate]) {
    let count = Double(updates.reduce(0) { $0 + $1.parameter.count })
    timed("adamWStep", flops: 12 * count, bytes: 4 * count * 7) { wrapped.adamWSteps(updates) }
  }

  public func sgdStep(_ step: SGDStep, parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?) {
    let streams = momentumBuffer == nil ? 3 : 5
    timed("sgdStep", flops: 4 * Double(parameter.count), bytes: Self.bytes(parameter.count) * Double(streams)) {
      wrapped.sgdStep(step, parameter: parameter, gradient: gradient, momentumBuffer: momentumBuffer)
    }
  }

  public func linearCombination(_ x: Tensor, scaledBy alpha: Float, adding y: Tensor, scaledBy beta: Float) {
    timed("linearCombination", flops: 3 * Double(x.count), bytes: Self.bytes(x.count, y.count, x.count)) {
      wrapped.linearCombination(x, scaledBy: alpha, adding: y, scaledBy: beta)
    }
  }
}

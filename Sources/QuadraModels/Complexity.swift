import QuadraNN

/// Non-negative size arithmetic that saturates at `Int.max` instead of trapping, so sizes of
/// absurd (unvalidated) configs or resolutions come out as "too large" rather than crashing.
struct SaturatingSize {
  var value: Int

  init(_ value: Int) { self.value = Swift.max(value, 0) }

  static func * (a: SaturatingSize, b: SaturatingSize) -> SaturatingSize {
    let (product, overflow) = a.value.multipliedReportingOverflow(by: b.value)
    return SaturatingSize(overflow ? Int.max : product)
  }

  static func + (a: SaturatingSize, b: SaturatingSize) -> SaturatingSize {
    let (sum, overflow) = a.value.addingReportingOverflow(b.value)
    return SaturatingSize(overflow ? Int.max : sum)
  }

  static func += (a: inout SaturatingSize, b: SaturatingSize) { a = a + b }

  /// The product of `factors`, saturating.
  static func product(_ factors: Int...) -> SaturatingSize {
    factors.reduce(SaturatingSize(1)) { $0 * SaturatingSize($1) }
  }
}

extension ModelConfig {
  /// Multiply-accumulates of one forward pass on a `resolution`² image: every convolution and
  /// linear map (as fvcore/`calc_flops.py` count them); elementwise products, norms and
  /// activations are not counted. Saturates at `Int.max` (never traps) for sizes beyond it.
  public func macs(resolution: Int) -> Int {
    let sizes = stageResolutions(inputResolution: resolution)
    let p = SaturatingSize.product
    // Stem: a patchify (or overlapping) convolution.
    var total = p(sizes[0], sizes[0], widths[0], inputChannels, stemKernel, stemKernel)
    for stage in depths.indices {
      let pixels = p(sizes[stage], sizes[stage])
      let c = widths[stage]
      if stage > 0 { total += pixels * p(c, widths[stage - 1], 4) }
      let mlp = pixels * p(2, c, mlpRatio, c)
      let mixer: SaturatingSize
      switch mixers[stage] {
      case .quadratic(let k):
        mixer = pixels * p(3, c, k, k)
      case .depthwise(let k):
        mixer = pixels * p(c, k, k)
      case .gnConv(let order, _):
        let dims = gnConvDimensions(channels: c, order: order)
        let projections = zip(dims, dims.dropFirst()).reduce(SaturatingSize(0)) { $0 + p($1.0, $1.1) }
        let widthSum = dims.reduce(SaturatingSize(0)) { $0 + SaturatingSize($1) }
        mixer = pixels * (p(c, 2, c) + widthSum * SaturatingSize(49) + projections + p(c, c))
      }
      total += SaturatingSize(depths[stage]) * (mixer + mlp)
    }
    total += p(widths[widths.count - 1], classCount)
    return total.value
  }

  /// Trainable parameters, computed from the config (equals `VisionModel.parameterCount`).
  /// Saturates at `Int.max` (never traps).
  public var parameterCount: Int {
    let p = SaturatingSize.product
    var total = p(inputChannels, stemKernel, stemKernel, widths[0]) + p(3, widths[0])
    for stage in depths.indices {
      let c = widths[stage]
      if stage > 0 { total += p(2, widths[stage - 1]) + p(widths[stage - 1], 4, c) + SaturatingSize(c) }
      let mlp = p(c, mlpRatio, c) + p(mlpRatio, c) + p(mlpRatio, c, c) + SaturatingSize(c)
      var block = mlp + p(2, c)  // the MLP's LayerNorm
      switch mixers[stage] {
      case .quadratic(let k):
        block += SaturatingSize(3) * (p(k, k, c) + SaturatingSize(c)) + p(4, c)  // three convs, norm1, γ1 and γ2
      case .depthwise(let k):
        block += p(k, k, c) + p(2, c)  // dwconv and γ
      case .gnConv(let order, _):
        let dims = gnConvDimensions(channels: c, order: order)
        let width = dims.reduce(SaturatingSize(0)) { $0 + SaturatingSize($1) }
        block += p(c, 2, c) + p(2, c) + width * SaturatingSize(50) + p(c, c) + SaturatingSize(c)
        block += zip(dims, dims.dropFirst()).reduce(SaturatingSize(0)) { $0 + p($1.0, $1.1) + SaturatingSize($1.1) }
        block += p(4, c)  // norm1, γ1 and γ2
      }
      total += SaturatingSize(depths[stage]) * block
    }
    let last = widths[widths.count - 1]
    total += p(2, last) + p(last, classCount) + SaturatingSize(classCount)
    return total.value
  }

  /// gnConv's channel widths `C/2^(n−1), …, C/2, C` (the order is clamped to 1…62 so shifts stay defined).
  func gnConvDimensions(channels: Int, order: Int) -> [Int] {
    (0..<Swift.min(Swift.max(order, 1), 62)).map { channels >> $0 }.reversed()
  }

  /// Bytes a training run holds for the parameters: weights, gradients and AdamW's two moments,
  /// i.e. `4 × 4 × parameterCount` (F32). Saturates at `Int.max`.
  public var trainingParameterBytes: Int {
    (SaturatingSize(parameterCount) * SaturatingSize(16)).value
  }

  /// A conservative (over-)estimate of the activation bytes one training step saves for the backward
  /// pass on a batch of `batchSize` images of `resolution`²:
  ///
  ///     4 bytes · batch · Σ_stages (resolution_s² · width_s · depth_s · f_s) + the stem and downsampling maps
  ///
  /// with the per-block factor `f = 16 + 3·mlpRatio` for quadratic and depthwise mixers (norms,
  /// mixer input and output, layer scales, residuals, the MLP's hidden pre- and post-GELU maps) and
  /// `f = 24 + 3·mlpRatio` for gnConv (its 2C projection, the depthwise map and the gated products).
  /// It is about 1.5× the measured peak of `bench models`. Saturates at `Int.max`.
  public func trainingActivationBytes(batchSize: Int, resolution: Int) -> Int {
    let sizes = stageResolutions(inputResolution: resolution)
    let p = SaturatingSize.product
    // The input batch and the stem's output and norm.
    var floats = p(resolution, resolution, inputChannels) + p(sizes[0], sizes[0], widths[0], 3)
    for stage in depths.indices {
      let pixels = p(sizes[stage], sizes[stage])
      let factor: Int
      switch mixers[stage] {
      case .quadratic, .depthwise: factor = 16 + 3 * mlpRatio
      case .gnConv: factor = 24 + 3 * mlpRatio
      }
      floats += pixels * p(widths[stage], depths[stage], factor)
      // Downsampling: the norm of the previous width and the new map.
      if stage > 0 { floats += pixels * p(4, widths[stage - 1] + widths[stage]) }
    }
    return (floats * p(batchSize, 4)).value
  }

  /// A conservative estimate of the peak activation bytes of an inference pass (nothing recorded for
  /// gradients) on `batchSize` images of `resolution`²: the input batch plus, at the most demanding
  /// stage, `f · resolution_s² · width_s` floats per image for the maps alive inside one block, with
  /// `f = 6 + 2·mlpRatio` (`10 + 2·mlpRatio` for gnConv). Saturates at `Int.max`.
  public func inferenceActivationBytes(batchSize: Int, resolution: Int) -> Int {
    let sizes = stageResolutions(inputResolution: resolution)
    let p = SaturatingSize.product
    var largest = p(sizes[0], sizes[0], widths[0], 3)  // the stem's output and norm
    for stage in depths.indices {
      let factor: Int
      switch mixers[stage] {
      case .quadratic, .depthwise: factor = 6 + 2 * mlpRatio
      case .gnConv: factor = 10 + 2 * mlpRatio
      }
      let maps = p(sizes[stage], sizes[stage], widths[stage], factor)
      if maps.value > largest.value { largest = maps }
    }
    let floats = p(resolution, resolution, inputChannels) + largest
    return (floats * p(batchSize, 4)).value
  }

  /// Throws ``QuadraCore/MemoryBudgetError`` when an inference pass on `batchSize` images of `resolution`²
  /// (the weights and ``inferenceActivationBytes(batchSize:resolution:)``) would exceed the memory limit.
  public func checkInferenceMemory(batchSize: Int, resolution: Int) throws {
    let total = SaturatingSize.product(parameterCount, 4) + SaturatingSize(
      inferenceActivationBytes(batchSize: batchSize, resolution: resolution))
    try MemoryBudget.check(
      total.value,
      for: "evaluating model \(name) on batches of \(batchSize) image(s) of \(resolution)×\(resolution) "
        + "(weights and activations)")
  }

  /// Throws ``QuadraCore/MemoryBudgetError`` when the parameters with their gradients and AdamW
  /// moments (``trainingParameterBytes``) exceed the process's memory limit.
  public func checkParameterMemory() throws {
    try MemoryBudget.check(
      trainingParameterBytes,
      for: "model \(name) (\(parameterCount) parameters, with gradients and AdamW moments)")
  }

  /// Throws ``QuadraCore/MemoryBudgetError`` when a training step on `batchSize` images of
  /// `resolution`² (parameters, gradients, moments and ``trainingActivationBytes(batchSize:resolution:)``)
  /// would exceed the process's memory limit.
  public func checkTrainingMemory(batchSize: Int, resolution: Int) throws {
    let total = SaturatingSize(trainingParameterBytes) + SaturatingSize(
      trainingActivationBytes(batchSize: batchSize, resolution: resolution))
    try MemoryBudget.check(
      total.value,
      for: "a training step of model \(name) on \(batchSize) image(s) of \(resolution)×\(resolution) "
        + "(parameters, gradients, AdamW moments and saved activations)")
  }
}

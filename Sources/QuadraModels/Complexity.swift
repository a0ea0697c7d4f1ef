extension ModelConfig {
  /// Multiply-accumulates of one forward pass on a `resolution`² image: every convolution and
  /// linear map (as fvcore/`calc_flops.py` count them); elementwise products, norms and
  /// activations are not counted.
  public func macs(resolution: Int) -> Int {
    let sizes = stageResolutions(inputResolution: resolution)
    var total = 0
    // Stem: a patchify (or overlapping) convolution.
    total += sizes[0] * sizes[0] * widths[0] * inputChannels * stemKernel * stemKernel
    for stage in depths.indices {
      let pixels = sizes[stage] * sizes[stage]
      let c = widths[stage]
      if stage > 0 { total += pixels * c * widths[stage - 1] * 4 }
      let mlp = 2 * pixels * c * mlpRatio * c
      let mixer: Int
      switch mixers[stage] {
      case .quadratic(let k):
        mixer = 3 * pixels * c * k * k
      case .depthwise(let k):
        mixer = pixels * c * k * k
      case .gnConv(let order, _):
        let dims = (0..<order).map { c >> $0 }.reversed() as [Int]
        let projections = zip(dims, dims.dropFirst()).reduce(0) { $0 + $1.0 * $1.1 }
        mixer = pixels * (c * 2 * c + dims.reduce(0, +) * 49 + projections + c * c)
      }
      total += depths[stage] * (mixer + mlp)
    }
    total += widths[widths.count - 1] * classCount
    return total
  }

  /// Trainable parameters, computed from the config (equals `VisionModel.parameterCount`).
  public var parameterCount: Int {
    var total = inputChannels * stemKernel * stemKernel * widths[0] + widths[0] + 2 * widths[0]
    for stage in depths.indices {
      let c = widths[stage]
      if stage > 0 { total += 2 * widths[stage - 1] + widths[stage - 1] * 4 * c + c }
      let mlp = c * mlpRatio * c + mlpRatio * c + mlpRatio * c * c + c
      var block = mlp + 2 * c  // the MLP's LayerNorm
      switch mixers[stage] {
      case .quadratic(let k):
        block += 3 * (k * k * c + c) + 2 * c + 2 * c  // three convs, norm1, γ1 and γ2
      case .depthwise(let k):
        block += k * k * c + c + c  // dwconv and γ
      case .gnConv(let order, _):
        let dims = (0..<order).map { c >> $0 }.reversed() as [Int]
        let width = dims.reduce(0, +)
        block += (c * 2 * c + 2 * c) + (49 * width + width) + (c * c + c)
        block += zip(dims, dims.dropFirst()).reduce(0) { $0 + $1.0 * $1.1 + $1.1 }
        block += 2 * c + 2 * c  // norm1, γ1 and γ2
      }
      total += depths[stage] * block
    }
    let last = widths[widths.count - 1]
    total += 2 * last + last * classCount + classCount
    return total
  }
}

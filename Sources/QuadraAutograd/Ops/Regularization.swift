extension Variable {
  /// Drop-path (stochastic depth) on a residual branch: during training each sample (index along
  /// axis 0) is zeroed with probability `probability`, and the survivors are scaled by
  /// `1/(1 − probability)` so the expected value is unchanged. Identity when not training or when
  /// `probability` is 0 (and then nothing is drawn from `generator`).
  ///
  /// One uniform number is drawn per sample, in order, so a seed reproduces the mask.
  public func dropPath(probability: Float, training: Bool, using generator: inout RandomGenerator) -> Variable {
    // fatalError rather than precondition: its message survives optimized builds.
    if !(probability >= 0 && probability <= 1) { fatalError("dropPath: probability \(probability) is outside [0, 1]") }
    if rank < 1 { fatalError("dropPath: input must have a batch axis, got shape \(shape)") }
    guard training && probability > 0 else { return self }
    let keep = 1 - probability
    let scale = keep > 0 ? 1 / keep : 0
    var factors = [Float](repeating: 0, count: shape[0])
    for n in factors.indices where generator.nextUniform() < keep { factors[n] = scale }
    let mask = Tensor(shape: [shape[0]] + [Int](repeating: 1, count: rank - 1), scalars: factors)
    return Variable.record(value.multiplying(mask), inputs: [self]) { g in [g.multiplying(mask)] }
  }
}

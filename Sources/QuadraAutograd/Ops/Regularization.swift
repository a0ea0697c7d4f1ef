extension Variable {
  /// Drop-path (stochastic depth) on a residual branch: during training each sample (index along
  /// axis 0) is zeroed with probability `probability`, and the survivors are scaled by
  /// `1/(1 − probability)` so the expected value is unchanged. Identity when not training or when
  /// `probability` is 0 (and then nothing is drawn from `generator`).
  ///
  /// One uniform number is drawn per sample, in order, so a seed reproduces the mask. With a
  /// `window`, this batch is the samples `window.offset ..< window.offset + N` of a larger batch of
  /// `window.total` samples (a data-parallel shard): all `window.total` numbers are drawn and the
  /// window's are used, so every shard advances `generator` exactly as the whole batch would and
  /// each sample gets the number it gets in a single-process run.
  public func dropPath(
    probability: Float, training: Bool, using generator: inout RandomGenerator, window: SampleWindow? = nil
  ) -> Variable {
    // fatalError rather than precondition: its message survives optimized builds.
    if !(probability >= 0 && probability <= 1) { fatalError("dropPath: probability \(probability) is outside [0, 1]") }
    if rank < 1 { fatalError("dropPath: input must have a batch axis, got shape \(shape)") }
    guard training && probability > 0 else { return self }
    let keep = 1 - probability
    let scale = keep > 0 ? 1 / keep : 0
    let window = window ?? SampleWindow(offset: 0, total: shape[0])
    if window.offset < 0 || window.offset + shape[0] > window.total {
      fatalError("dropPath: samples \(window.offset)..<\(window.offset + shape[0]) are outside the batch of \(window.total)")
    }
    var factors = [Float](repeating: 0, count: shape[0])
    for n in 0..<window.total where generator.nextUniform() < keep {
      let local = n - window.offset
      if local >= 0 && local < factors.count { factors[local] = scale }
    }
    let mask = Tensor(shape: [shape[0]] + [Int](repeating: 1, count: rank - 1), scalars: factors)
    return Variable.record(value.multiplying(mask), inputs: [self]) { g in [g.multiplying(mask)] }
  }
}

/// Where a batch lies in the larger batch it was cut from (a data-parallel shard): its samples are
/// `offset ..< offset + count` of `total`. Per-sample random draws use it to draw for all `total`
/// samples and keep their own, so a shard sees the numbers its samples see in the whole batch.
public struct SampleWindow: Sendable, Equatable {
  public var offset: Int
  public var total: Int

  public init(offset: Int, total: Int) {
    self.offset = offset
    self.total = total
  }
}

/// Exponential moving average of parameters (timm's `ModelEmaV2`): `shadow ← d·shadow + (1−d)·θ`
/// after every optimizer step.
public final class ExponentialMovingAverage {
  public let decay: Float
  /// The averaged values by parameter name. Holding on to them makes the next update copy that
  /// storage once (it is updated in place otherwise).
  public private(set) var shadow: [String: Tensor]

  public init(parameters: [(name: String, parameter: Parameter)], decay: Float) {
    self.decay = decay
    shadow = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.parameter.variable.value.copy()) })
  }

  public init(shadow: [String: Tensor], decay: Float) {
    self.decay = decay
    self.shadow = shadow
  }

  /// Moves every average toward its parameter's current value (parameters without an average are skipped).
  public func update(from parameters: [(name: String, parameter: Parameter)]) {
    for entry in parameters where shadow[entry.name] != nil {
      // Mutated where it is stored: a local copy would share the storage and force a copy.
      shadow[entry.name]!.formLinearCombination(
        scaledBy: decay, adding: entry.parameter.variable.value, scaledBy: 1 - decay)
    }
  }
}

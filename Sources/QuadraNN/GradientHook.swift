/// A step between the backward passes and the optimizer update that sees the gradients of one
/// optimizer step and may rewrite them: an all-reduce across workers, gradient clipping, logging.
///
/// Contract (as the `Trainer` calls hooks):
/// - A hook runs exactly once per optimizer step, after the gradients of all the step's
///   micro-batches are summed (each micro-batch loss is scaled by 1 / micro-batches, so the
///   gradients are those of the mean loss over the step's samples) and before the update.
///   Hooks run in order; gradient clipping runs after all of them.
/// - The gradients are `parameter.variable.grad`; nil means the parameter got no gradient this
///   step (the optimizer then leaves it alone).
/// - A hook may modify a gradient in place or replace it with a tensor of the same shape (a
///   different shape is an error), or set it to nil to skip the parameter. It must not change
///   parameter values, which the optimizer state and the checkpoints describe.
/// - A thrown error stops training; the last checkpoint is kept.
public protocol GradientHook {
  /// - Parameters:
  ///   - parameters: every trainable parameter with its PyTorch name, in definition order.
  ///   - step: the 0-based index of the optimizer step about to be taken.
  func processGradients(of parameters: [(name: String, parameter: Parameter)], step: Int) throws
}

/// Scales all gradients so that their global L2 norm is at most ``maxNorm``
/// (`torch.nn.utils.clip_grad_norm_`): with ‖g‖ = √(Σ_p Σ_i g²), every gradient is multiplied
/// by `maxNorm / (‖g‖ + 10⁻⁶)` when ‖g‖ > `maxNorm`.
public struct GradientNormClipping: GradientHook, Sendable {
  public let maxNorm: Float

  /// - Throws: ``OptimizerError/invalidHyperparameter(name:value:allowed:)`` unless `maxNorm` is positive and finite.
  public init(maxNorm: Float) throws {
    try checkHyperparameter("gradient clipping norm", maxNorm, in: "(0, ∞)") { $0 > 0 }
    self.maxNorm = maxNorm
  }

  public func processGradients(of parameters: [(name: String, parameter: Parameter)], step: Int) {
    clipGradientNorm(parameters, maxNorm: maxNorm)
  }
}

/// Scales all gradients in place so that their global L2 norm is at most `maxNorm`
/// (`torch.nn.utils.clip_grad_norm_`, see ``GradientNormClipping``). Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [(name: String, parameter: Parameter)], maxNorm: Float) -> Float {
  var sumOfSquares = 0.0
  for entry in parameters {
    if let gradient = entry.parameter.variable.grad { sumOfSquares += gradient.squaredSum() }
  }
  let norm = Float(sumOfSquares.squareRoot())
  guard norm > maxNorm, norm > 0 else { return norm }
  let scale = maxNorm / (norm + 1e-6)
  for entry in parameters where entry.parameter.variable.grad != nil {
    // In place through the stored property: a local copy would share the storage and force a copy.
    entry.parameter.variable.grad! *= scale
  }
  return norm
}

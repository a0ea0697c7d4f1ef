import Foundation

/// Adam with decoupled weight decay (Loshchilov & Hutter), as `torch.optim.AdamW`:
///
///     θ ← θ · (1 − lr·λ)                       (only parameters with `weightDecay`)
///     m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
///     θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
///
/// The moments are tensors from the tracking allocator, so they count toward peak memory
/// exactly as in PyTorch. They are keyed by parameter name so checkpoints can save and
/// restore them (``state`` / ``load(state:)``).
public final class AdamW {
  public var learningRate: Float
  public var beta1: Float
  public var beta2: Float
  public var epsilon: Float
  public var weightDecay: Float
  /// Number of completed steps (t in the bias corrections).
  public private(set) var step = 0

  private let parameters: [(name: String, parameter: Parameter)]
  private var firstMoments: [Tensor?]
  private var secondMoments: [Tensor?]

  public init(
    parameters: [(name: String, parameter: Parameter)], learningRate: Float = 1e-3, beta1: Float = 0.9,
    beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.05
  ) {
    self.parameters = parameters
    self.learningRate = learningRate
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self.weightDecay = weightDecay
    firstMoments = Array(repeating: nil, count: parameters.count)
    secondMoments = Array(repeating: nil, count: parameters.count)
  }

  /// Applies one update from the parameters' accumulated gradients (parameters without a gradient are skipped).
  public func update() {
    step += 1
    let t = Float(step)
    let correction1 = 1 - pow(beta1, t)
    let correction2 = 1 - pow(beta2, t)
    for index in parameters.indices {
      let parameter = parameters[index].parameter
      guard let gradient = parameter.variable.grad else { continue }
      opPrecondition(
        gradient.shape == parameter.variable.shape,
        "AdamW: gradient \(gradient.shape) for parameter \(parameters[index].name) of shape \(parameter.variable.shape)")
      var m = firstMoments[index] ?? Tensor(zeros: gradient.shape)
      var v = secondMoments[index] ?? Tensor(zeros: gradient.shape)
      let decay = parameter.weightDecay ? 1 - learningRate * weightDecay : 1
      let (b1, b2, lr, eps) = (beta1, beta2, learningRate, epsilon)
      let stepSize = lr / correction1
      let inverseSqrtCorrection2 = 1 / correction2.squareRoot()
      m.withUnsafeMutableBufferPointer { mBuffer in
        v.withUnsafeMutableBufferPointer { vBuffer in
          gradient.withUnsafeBufferPointer { gBuffer in
            parameter.variable.withMutableValue { theta in
              let mp = mBuffer.baseAddress!, vp = vBuffer.baseAddress!
              let gp = gBuffer.baseAddress!, tp = theta.baseAddress!
              Parallel.forRanges(theta.count, minimumChunk: 1 << 15) { range in
                for i in range {
                  let g = gp[i]
                  let mi = b1 * mp[i] + (1 - b1) * g
                  let vi = b2 * vp[i] + (1 - b2) * g * g
                  mp[i] = mi
                  vp[i] = vi
                  let denominator = vi.squareRoot() * inverseSqrtCorrection2 + eps
                  tp[i] = tp[i] * decay - stepSize * mi / denominator
                }
              }
            }
          }
        }
      }
      firstMoments[index] = m
      secondMoments[index] = v
    }
  }

  /// The optimizer state as named tensors (`exp_avg.<param>`, `exp_avg_sq.<param>`) plus the step count.
  public var state: (step: Int, tensors: [String: Tensor]) {
    var tensors: [String: Tensor] = [:]
    for (index, entry) in parameters.enumerated() {
      if let m = firstMoments[index] { tensors["exp_avg.\(entry.name)"] = m }
      if let v = secondMoments[index] { tensors["exp_avg_sq.\(entry.name)"] = v }
    }
    return (step, tensors)
  }

  /// Restores a state saved by ``state``; shapes must match the parameters.
  public func load(step: Int, tensors: [String: Tensor]) throws {
    var first = [Tensor?](repeating: nil, count: parameters.count)
    var second = [Tensor?](repeating: nil, count: parameters.count)
    for (index, entry) in parameters.enumerated() {
      for (prefix, isFirst) in [("exp_avg.", true), ("exp_avg_sq.", false)] {
        guard let tensor = tensors[prefix + entry.name] else { continue }
        guard tensor.shape == entry.parameter.variable.shape else {
          throw OptimizerStateError.shapeMismatch(
            name: prefix + entry.name, expected: entry.parameter.variable.shape, found: tensor.shape)
        }
        if isFirst { first[index] = tensor.copy() } else { second[index] = tensor.copy() }
      }
    }
    self.step = step
    firstMoments = first
    secondMoments = second
  }
}

public enum OptimizerStateError: Error, CustomStringConvertible {
  case shapeMismatch(name: String, expected: [Int], found: [Int])

  public var description: String {
    switch self {
    case .shapeMismatch(let name, let expected, let found):
      return "optimizer state \(name): expected shape \(expected), found \(found)"
    }
  }
}

/// Scales all gradients so that their global L2 norm is at most `maxNorm`
/// (`torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [(name: String, parameter: Parameter)], maxNorm: Float) -> Float {
  var sumOfSquares = 0.0
  for entry in parameters {
    entry.parameter.variable.grad?.withUnsafeBufferPointer { g in
      var partial: Float = 0
      for x in g { partial += x * x }
      sumOfSquares += Double(partial)
    }
  }
  let norm = Float(sumOfSquares.squareRoot())
  guard norm > maxNorm, norm > 0 else { return norm }
  let scale = maxNorm / (norm + 1e-6)
  for entry in parameters {
    guard var gradient = entry.parameter.variable.grad else { continue }
    gradient.withUnsafeMutableBufferPointer { g in
      for i in g.indices { g[i] *= scale }
    }
    entry.parameter.variable.grad = gradient
  }
  return norm
}

/// Learning rate with linear warm-up then cosine decay to `minimum` (timm's `CosineLRScheduler` per step).
public struct CosineSchedule: Sendable, Codable {
  public var peak: Float
  public var minimum: Float
  public var warmupSteps: Int
  public var totalSteps: Int

  public init(peak: Float, minimum: Float = 1e-6, warmupSteps: Int, totalSteps: Int) {
    opPrecondition(totalSteps > 0 && warmupSteps >= 0, "CosineSchedule: totalSteps \(totalSteps), warmupSteps \(warmupSteps)")
    self.peak = peak
    self.minimum = minimum
    self.warmupSteps = warmupSteps
    self.totalSteps = totalSteps
  }

  /// The learning rate for 0-based `step`.
  public func learningRate(at step: Int) -> Float {
    if step < warmupSteps {
      return peak * Float(step + 1) / Float(warmupSteps)
    }
    let decaySteps = Swift.max(totalSteps - warmupSteps, 1)
    let progress = Float(Swift.min(step - warmupSteps, decaySteps)) / Float(decaySteps)
    return minimum + 0.5 * (peak - minimum) * (1 + cos(Float.pi * progress))
  }
}

/// Exponential moving average of parameters (timm's `ModelEmaV2`): `shadow ← d·shadow + (1−d)·θ`.
public final class ExponentialMovingAverage {
  public let decay: Float
  public private(set) var shadow: [String: Tensor]

  public init(parameters: [(name: String, parameter: Parameter)], decay: Float) {
    self.decay = decay
    shadow = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.parameter.variable.value.copy()) })
  }

  public init(shadow: [String: Tensor], decay: Float) {
    self.decay = decay
    self.shadow = shadow
  }

  public func update(from parameters: [(name: String, parameter: Parameter)]) {
    let d = decay
    for entry in parameters {
      guard var average = shadow[entry.name] else { continue }
      let value = entry.parameter.variable.value
      average.withUnsafeMutableBufferPointer { a in
        value.withUnsafeBufferPointer { v in
          for i in a.indices { a[i] = d * a[i] + (1 - d) * v[i] }
        }
      }
      shadow[entry.name] = average
    }
  }
}

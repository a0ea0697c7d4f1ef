import Foundation

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

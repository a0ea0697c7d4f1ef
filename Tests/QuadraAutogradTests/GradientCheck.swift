import Testing

@testable import QuadraAutograd

/// Checks the analytic gradients of `function` against central finite differences.
///
/// The output is reduced to a scalar with a fixed random projection,
/// `L = Σ f(x) ⊙ R`, so every output element contributes and errors cannot cancel.
/// `L` is accumulated in Double, and each checked input element is perturbed by
/// ±`epsilon`; the finite difference must match the gradient from ``Variable/backward(_:)``
/// within `tolerance` relative to max(|numeric|, |analytic|, `floor`).
///
/// At most `maxChecksPerInput` elements of each input are checked (chosen at random), which
/// keeps the check fast on larger shapes while covering borders through `alwaysCheck` indices.
func checkGradients(
  _ inputs: [Tensor],
  epsilon: Float = 1e-2,
  tolerance: Float = 2e-2,
  floor: Float = 1e-2,
  maxChecksPerInput: Int = 48,
  seed: UInt64 = 7,
  sourceLocation: SourceLocation = #_sourceLocation,
  _ function: ([Variable]) -> Variable
) {
  var generator = RandomGenerator(seed: seed)
  let variables = inputs.map { Variable($0, requiresGrad: true) }
  let output = function(variables)
  let projection = Tensor.normal(shape: output.shape, using: &generator)
  do {
    try output.backward(projection)
  } catch {
    Issue.record(error, sourceLocation: sourceLocation)
    return
  }

  func loss(_ values: [Tensor]) -> Double {
    let out = GradientMode.withoutRecording { function(values.map { Variable($0) }) }
    var sum = 0.0
    out.value.withUnsafeBufferPointer { o in
      projection.withUnsafeBufferPointer { r in
        for i in o.indices { sum += Double(o[i]) * Double(r[i]) }
      }
    }
    return sum
  }

  for (inputIndex, input) in inputs.enumerated() {
    let analytic = variables[inputIndex].grad ?? Tensor(zeros: input.shape)
    #expect(analytic.shape == input.shape, "gradient shape of input \(inputIndex)", sourceLocation: sourceLocation)
    var indices = Array(0..<input.count)
    if indices.count > maxChecksPerInput {
      indices.shuffle(using: &generator)
      indices = Array(indices.prefix(maxChecksPerInput - 2)) + [0, input.count - 1]
    }
    var failures = 0
    for index in indices {
      var values = inputs
      let original = input.scalars[index]
      values[inputIndex].withUnsafeMutableBufferPointer { $0[index] = original + epsilon }
      let plus = loss(values)
      values[inputIndex].withUnsafeMutableBufferPointer { $0[index] = original - epsilon }
      let minus = loss(values)
      let numeric = Float((plus - minus) / Double(2 * epsilon))
      let exact = analytic.scalars[index]
      let scale = Swift.max(abs(numeric), abs(exact), floor)
      if abs(numeric - exact) > tolerance * scale {
        failures += 1
        if failures <= 3 {
          Issue.record(
            "input \(inputIndex) \(input.shape) element \(index): analytic \(exact), numeric \(numeric)",
            sourceLocation: sourceLocation)
        }
      }
    }
    #expect(failures == 0, "input \(inputIndex): \(failures) of \(indices.count) gradient elements off", sourceLocation: sourceLocation)
  }
}

/// Largest absolute elementwise difference; the shapes must match.
func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
  precondition(a.shape == b.shape, "maxAbsDifference: \(a.shape) vs \(b.shape)")
  var result: Float = 0
  a.withUnsafeBufferPointer { x in
    b.withUnsafeBufferPointer { y in
      for i in x.indices { result = Swift.max(result, abs(x[i] - y[i])) }
    }
  }
  return result
}

import QuadraCore

/// Differentiable matrix product `op(a) · op(b)` (rank 2, or batched rank 3), see ``QuadraCore/Tensor/matmul(_:transposeSelf:transposeOther:)``.
///
/// With `C = op(A) · op(B)` and `G = ∂L/∂C`: `∂L/∂op(A) = G · op(B)ᵀ` and `∂L/∂op(B) = op(A)ᵀ · G`;
/// for a transposed operand the gradient is transposed back, which the pullback folds into the
/// GEMM flags instead of copying.
public func matmul(_ a: Variable, _ b: Variable, transposeA: Bool = false, transposeB: Bool = false) -> Variable {
  let aValue = a.value, bValue = b.value
  let value = aValue.matmul(bValue, transposeSelf: transposeA, transposeOther: transposeB)
  let needsA = a.tracksGradient, needsB = b.tracksGradient
  return Variable.record(value, inputs: [a, b]) { gradient in
    var gradientA: Tensor?
    var gradientB: Tensor?
    if needsA {
      gradientA =
        transposeA
        // dA = (G · op(B)ᵀ)ᵀ = op(B) · Gᵀ
        ? bValue.matmul(gradient, transposeSelf: transposeB, transposeOther: true)
        // dA = G · op(B)ᵀ
        : gradient.matmul(bValue, transposeOther: !transposeB)
    }
    if needsB {
      gradientB =
        transposeB
        // dB = (op(A)ᵀ · G)ᵀ = Gᵀ · op(A)
        ? gradient.matmul(aValue, transposeSelf: true, transposeOther: transposeA)
        // dB = op(A)ᵀ · G
        : aValue.matmul(gradient, transposeSelf: !transposeA)
    }
    return [gradientA, gradientB]
  }
}

/// Differentiable affine map over the last dimension, `y = x · Wᵀ + b`, see
/// ``QuadraCore/Tensor/linear(weight:bias:)``: `x` is `[..., in]`, `weight` `[out, in]`, `bias` `[out]`.
///
/// The pullback is ``QuadraCore/Tensor/linearBackward(input:weight:outputGradient:needsInputGradient:hasBias:)``;
/// it skips `dX` when `x` does not track gradients (e.g. the network's input).
public func linear(_ x: Variable, weight: Variable, bias: Variable?) -> Variable {
  let input = x.value, weightValue = weight.value
  let value = input.linear(weight: weightValue, bias: bias?.value)
  let needsInput = x.tracksGradient
  let needsWeight = weight.tracksGradient
  let hasBias = bias != nil
  let needsBias = bias?.tracksGradient ?? false
  let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
  return Variable.record(value, inputs: inputs) { gradient in
    let gradients = Tensor.linearBackward(
      input: input, weight: weightValue, outputGradient: gradient,
      needsInputGradient: needsInput, hasBias: needsBias)
    var result: [Tensor?] = [gradients.input, needsWeight ? gradients.weight : nil]
    if hasBias { result.append(gradients.bias) }
    return result
  }
}

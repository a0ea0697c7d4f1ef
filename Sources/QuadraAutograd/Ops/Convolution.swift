/// Differentiable depthwise 2-D convolution (stride 1, "same" zero padding), channels-last.
///
/// `y[n, h, w, c] = b[c] + Σ_{i,j < k} x[n, h + i − p, w + j − p, c] · W[i, j, c]`, `p = k / 2`.
///
/// - Parameters:
///   - x: `[N, H, W, C]`.
///   - weight: `[k, k, C]`, `k` odd.
///   - bias: `[C]` or nil.
public func depthwiseConv2D(_ x: Variable, weight: Variable, bias: Variable?) -> Variable {
  let output = x.value.depthwiseConv2D(weight: weight.value, bias: bias?.value)
  let inputs = [x, weight] + (bias.map { [$0] } ?? [])
  let input = x.value, kernel = weight.value
  let needsInputGradient = x.tracksGradient
  return Variable.record(output, inputs: inputs) { gradient in
    let grads = Tensor.depthwiseConv2DBackward(
      input: input, weight: kernel, outputGradient: gradient,
      needsInputGradient: needsInputGradient, hasBias: bias != nil)
    return [grads.input, grads.weight] + (bias != nil ? [grads.bias] : [])
  }
}

/// Differentiable dense 2-D convolution with zero padding, channels-last.
///
/// `y[n, oh, ow, o] = b[o] + Σ_{i,j,c} x[n, oh·sh + i − ph, ow·sw + j − pw, c] · W[o, i, j, c]`
///
/// - Parameters:
///   - x: `[N, H, W, I]`.
///   - weight: `[O, kh, kw, I]`.
///   - bias: `[O]` or nil.
///   - stride: `(sh, sw)`.
///   - padding: `(ph, pw)`.
public func conv2D(
  _ x: Variable, weight: Variable, bias: Variable?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
) -> Variable {
  let output = x.value.conv2D(weight: weight.value, bias: bias?.value, stride: stride, padding: padding)
  let inputs = [x, weight] + (bias.map { [$0] } ?? [])
  let input = x.value, kernel = weight.value
  let needsInputGradient = x.tracksGradient
  return Variable.record(output, inputs: inputs) { gradient in
    let grads = Tensor.conv2DBackward(
      input: input, weight: kernel, outputGradient: gradient, stride: stride, padding: padding,
      needsInputGradient: needsInputGradient, hasBias: bias != nil)
    return [grads.input, grads.weight] + (bias != nil ? [grads.bias] : [])
  }
}

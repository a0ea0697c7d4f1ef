extension Tensor {
  // MARK: Depthwise

  /// Depthwise 2-D convolution with stride 1 and "same" zero padding (`p = k / 2`).
  ///
  /// `y[n, h, w, c] = b[c] + Σ_{i,j < k} x[n, h + i − p, w + j − p, c] · W[i, j, c]`
  ///
  /// - Parameters:
  ///   - weight: `[k, k, C]`, `k` odd (channels innermost, the layout the kernel vectorizes over).
  ///   - bias: `[C]` or nil.
  /// - Returns: `[N, H, W, C]`, the shape of `self`.
  public func depthwiseConv2D(weight: Tensor, bias: Tensor?) -> Tensor {
    _ = Tensor.checkDepthwise(input: shape, weight: weight.shape, bias: bias?.shape)
    let backend = Backends.backend(op: "depthwiseConv2D", [self, weight] + (bias.map { [$0] } ?? []))
    let output = Tensor(uninitializedShape: shape, device: device)
    backend.depthwiseConvolution(self, weight: weight, bias: bias, into: output)
    return output
  }

  /// Gradients of ``depthwiseConv2D(weight:bias:)`` given `outputGradient = ∂L/∂y`.
  ///
  /// `∂L/∂x` is the correlation of `∂L/∂y` with the spatially flipped kernel,
  /// `∂L/∂W[i, j, c] = Σ_{n,h,w} x[n, h + i − p, w + j − p, c] · ∂L/∂y[n, h, w, c]`,
  /// `∂L/∂b[c] = Σ_{n,h,w} ∂L/∂y[n, h, w, c]`.
  public static func depthwiseConv2DBackward(
    input: Tensor, weight: Tensor, outputGradient: Tensor, needsInputGradient: Bool, hasBias: Bool
  ) -> (input: Tensor?, weight: Tensor, bias: Tensor?) {
    let c = checkDepthwise(input: input.shape, weight: weight.shape, bias: nil).channels
    opPrecondition(
      outputGradient.shape == input.shape,
      "depthwiseConv2D backward: output gradient \(outputGradient.shape) differs from output shape \(input.shape)")
    let backend = Backends.backend(op: "depthwiseConv2D backward", [input, weight, outputGradient])
    let device = input.device
    let inputGradient = needsInputGradient ? Tensor(uninitializedShape: input.shape, device: device) : nil
    let weightGradient = Tensor(uninitializedShape: weight.shape, device: device)
    let biasGradient = hasBias ? Tensor(uninitializedShape: [c], device: device) : nil
    backend.depthwiseConvolutionBackward(
      input, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient,
      weightGradient: weightGradient, biasGradient: biasGradient)
    return (inputGradient, weightGradient, biasGradient)
  }

  static func checkDepthwise(
    input: [Int], weight: [Int], bias: [Int]?
  ) -> (batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int) {
    let shapes = "input \(input), weight \(weight)\(bias.map { ", bias \($0)" } ?? "")"
    opPrecondition(input.count == 4, "depthwiseConv2D: input must be [N, H, W, C]; \(shapes)")
    opPrecondition(weight.count == 3, "depthwiseConv2D: weight must be [k, k, C]; \(shapes)")
    opPrecondition(
      weight[0] == weight[1] && weight[0] % 2 == 1,
      "depthwiseConv2D: kernel must be square with an odd size; \(shapes)")
    opPrecondition(weight[2] == input[3], "depthwiseConv2D: weight channels differ from input channels; \(shapes)")
    if let bias {
      opPrecondition(bias == [input[3]], "depthwiseConv2D: bias must be [C]; \(shapes)")
    }
    opPrecondition(
      input[1] > 0 && input[2] > 0 && input[3] > 0, "depthwiseConv2D: empty spatial or channel dimension; \(shapes)")
    return (input[0], input[1], input[2], input[3], weight[0])
  }

  // MARK: Dense

  /// Dense 2-D convolution with zero padding.
  ///
  /// `y[n, oh, ow, o] = b[o] + Σ_{i,j,c} x[n, oh·sh + i − ph, ow·sw + j − pw, c] · W[o, i, j, c]`
  ///
  /// - Parameters:
  ///   - weight: `[O, kh, kw, I]` (OHWI).
  ///   - bias: `[O]` or nil.
  ///   - stride: `(sh, sw)`, positive.
  ///   - padding: `(ph, pw)` zeros on each side.
  /// - Returns: `[N, OH, OW, O]` with `OH = (H + 2ph − kh) / sh + 1`, `OW` likewise.
  public func conv2D(
    weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
  ) -> Tensor {
    let geometry = Tensor.convolutionGeometry(
      input: shape, weight: weight.shape, bias: bias?.shape, stride: stride, padding: padding)
    let backend = Backends.backend(op: "conv2D", [self, weight] + (bias.map { [$0] } ?? []))
    let output = Tensor(uninitializedShape: geometry.outputShape, device: device)
    backend.convolution2D(self, weight: weight, bias: bias, geometry: geometry, into: output)
    return output
  }

  /// Gradients of ``conv2D(weight:bias:stride:padding:)`` given `outputGradient = ∂L/∂y`:
  /// `∂L/∂W = ∂L/∂Yᵀ · cols`, `∂L/∂x = col2im(∂L/∂Y · W)`, `∂L/∂b = Σ_rows ∂L/∂Y`.
  public static func conv2DBackward(
    input: Tensor, weight: Tensor, outputGradient: Tensor, stride: (Int, Int) = (1, 1),
    padding: (Int, Int) = (0, 0), needsInputGradient: Bool, hasBias: Bool
  ) -> (input: Tensor?, weight: Tensor, bias: Tensor?) {
    let geometry = convolutionGeometry(
      input: input.shape, weight: weight.shape, bias: nil, stride: stride, padding: padding)
    opPrecondition(
      outputGradient.shape == geometry.outputShape,
      "conv2D backward: output gradient \(outputGradient.shape) differs from output shape \(geometry.outputShape)")
    let backend = Backends.backend(op: "conv2D backward", [input, weight, outputGradient])
    let device = input.device
    let inputGradient = needsInputGradient ? Tensor(uninitializedShape: input.shape, device: device) : nil
    let weightGradient = Tensor(uninitializedShape: weight.shape, device: device)
    let biasGradient = hasBias ? Tensor(uninitializedShape: [geometry.outputChannels], device: device) : nil
    backend.convolution2DBackward(
      input, weight: weight, outputGradient: outputGradient, geometry: geometry, inputGradient: inputGradient,
      weightGradient: weightGradient, biasGradient: biasGradient)
    return (inputGradient, weightGradient, biasGradient)
  }

  static func convolutionGeometry(
    input: [Int], weight: [Int], bias: [Int]?, stride: (Int, Int), padding: (Int, Int)
  ) -> Convolution2D.Geometry {
    let shapes = "input \(input), weight \(weight)\(bias.map { ", bias \($0)" } ?? "")"
    opPrecondition(input.count == 4, "conv2D: input must be [N, H, W, I]; \(shapes)")
    opPrecondition(weight.count == 4, "conv2D: weight must be [O, kh, kw, I]; \(shapes)")
    opPrecondition(weight[3] == input[3], "conv2D: weight input channels differ from input channels; \(shapes)")
    if let bias {
      opPrecondition(bias == [weight[0]], "conv2D: bias must be [O]; \(shapes)")
    }
    return Convolution2D.Geometry(
      batch: input[0], height: input[1], width: input[2], inputChannels: input[3], outputChannels: weight[0],
      kernelHeight: weight[1], kernelWidth: weight[2], stride: stride, padding: padding)
  }
}

import QuadraModels

// Conversion between the engine's channels-last parameter layouts and PyTorch's.
// Each conversion is a pure permutation (plus a reshape), so a round trip is exact.

extension TorchLayout {
  /// The PyTorch shape of a parameter stored in the engine as `engineShape`.
  ///
  /// - `.convolution`: `[O, kh, kw, I]` → `[O, I, kh, kw]`
  /// - `.depthwiseConvolution`: `[kh, kw, C]` → `[C, 1, kh, kw]`
  /// - `.pointwiseConvolution`: `[O, I]` → `[O, I, 1, 1]`
  public func torchShape(engineShape s: [Int]) -> [Int] {
    switch self {
    case .identical: return s
    case .convolution:
      opPrecondition(s.count == 4, "TorchLayout.convolution: engine shape \(s) is not [O, kh, kw, I]")
      return [s[0], s[3], s[1], s[2]]
    case .depthwiseConvolution:
      opPrecondition(s.count == 3, "TorchLayout.depthwiseConvolution: engine shape \(s) is not [kh, kw, C]")
      return [s[2], 1, s[0], s[1]]
    case .pointwiseConvolution:
      opPrecondition(s.count == 2, "TorchLayout.pointwiseConvolution: engine shape \(s) is not [O, I]")
      return [s[0], s[1], 1, 1]
    }
  }

  /// The engine shape of a parameter whose PyTorch shape is `torchShape` (inverse of ``torchShape(engineShape:)``).
  public func engineShape(torchShape s: [Int]) -> [Int]? {
    switch self {
    case .identical: return s
    case .convolution: return s.count == 4 ? [s[0], s[2], s[3], s[1]] : nil
    case .depthwiseConvolution: return s.count == 4 && s[1] == 1 ? [s[2], s[3], s[0]] : nil
    case .pointwiseConvolution: return s.count == 4 && s[2] == 1 && s[3] == 1 ? [s[0], s[1]] : nil
    }
  }

  /// An engine-layout tensor in PyTorch's layout (a new tensor; `.identical` returns it unchanged).
  public func toTorch(_ tensor: Tensor) -> Tensor {
    switch self {
    case .identical:
      return tensor
    case .convolution:
      return tensor.permuted([0, 3, 1, 2])
    case .depthwiseConvolution:
      let s = tensor.shape
      return tensor.permuted([2, 0, 1]).reshaped([s[2], 1, s[0], s[1]])
    case .pointwiseConvolution:
      return tensor.reshaped(torchShape(engineShape: tensor.shape))
    }
  }

  /// A PyTorch-layout tensor in the engine's layout. The shape must be one ``toTorch(_:)`` produces.
  public func fromTorch(_ tensor: Tensor) -> Tensor {
    let s = tensor.shape
    opPrecondition(engineShape(torchShape: s) != nil, "TorchLayout.\(self).fromTorch: shape \(s) has the wrong form")
    switch self {
    case .identical:
      return tensor
    case .convolution:
      return tensor.permuted([0, 2, 3, 1])
    case .depthwiseConvolution:
      return tensor.reshaped([s[0], s[2], s[3]]).permuted([1, 2, 0])
    case .pointwiseConvolution:
      return tensor.reshaped([s[0], s[1]])
    }
  }
}

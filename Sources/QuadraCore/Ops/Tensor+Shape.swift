// Axis permutation, transposition, concatenation, splitting, slice writes, image gathering and
// global pooling.

extension Tensor {
  /// The tensor with its axes rearranged: output axis i is input axis `axes[i]`
  /// (e.g. `[0, 2, 3, 1]` turns NCHW into NHWC, `[0, 3, 1, 2]` turns it back).
  public func permuted(_ axes: [Int]) -> Tensor {
    opPrecondition(
      axes.count == rank && axes.sorted() == Array(0..<rank),
      "permute: axes \(axes) are not a permutation of 0..<\(rank) for shape \(shape)")
    if axes == Array(0..<rank) { return self }
    let result = Tensor(uninitializedShape: axes.map { shape[$0] }, device: device)
    backend.permute(self, axes: axes, into: result)
    return result
  }

  /// The transpose of a matrix.
  public func transposed() -> Tensor {
    opPrecondition(rank == 2, "transpose: expected a matrix, got shape \(shape)")
    return permuted([1, 0])
  }

  /// Joins tensors along `axis` (negative counts from the end); all other dimensions must match.
  public static func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
    opPrecondition(!tensors.isEmpty, "concat: no tensors given")
    let first = tensors[0].shape
    let resolved = axis < 0 ? axis + first.count : axis
    opPrecondition(resolved >= 0 && resolved < first.count, "concat: axis \(axis) is out of range for shape \(first)")
    func otherDimensions(_ shape: [Int]) -> [Int] {
      shape.enumerated().filter { $0.offset != resolved }.map(\.element)
    }
    for tensor in tensors {
      opPrecondition(
        tensor.rank == first.count && otherDimensions(tensor.shape) == otherDimensions(first),
        "concat: shapes \(tensors.map(\.shape)) differ outside axis \(axis)")
    }
    if tensors.count == 1 { return tensors[0] }
    var shape = first
    shape[resolved] = tensors.map { $0.shape[resolved] }.reduce(0, +)
    let backend = Backends.backend(op: "concat", tensors)
    let result = Tensor(uninitializedShape: shape, device: tensors[0].device)
    let outer = first[..<resolved].reduce(1, *)
    let total = result.count / Swift.max(outer, 1)
    var offset = 0
    for tensor in tensors {
      let width = tensor.shape[resolved...].reduce(1, *)
      backend.copyBlock(
        from: tensor, StridedBlock(offset: 0, rowStride: width), into: result,
        StridedBlock(offset: offset, rowStride: total), rows: outer, width: width)
      offset += width
    }
    return result
  }

  /// Joins tensors along their last axis (channels, for NHWC).
  public static func concat(alongLastAxis tensors: [Tensor]) -> Tensor {
    opPrecondition(!tensors.isEmpty, "concat(alongLastAxis:): no tensors given")
    return concat(tensors, axis: -1)
  }

  /// Cuts the tensor along `axis` into consecutive pieces of the given sizes (which must add
  /// up to the axis length).
  public func split(sizes: [Int], axis: Int) -> [Tensor] {
    let resolved = axis < 0 ? axis + rank : axis
    opPrecondition(resolved >= 0 && resolved < rank, "split: axis \(axis) is out of range for shape \(shape)")
    opPrecondition(
      sizes.allSatisfy { $0 >= 0 } && sizes.reduce(0, +) == shape[resolved],
      "split: sizes \(sizes) do not add up to \(shape[resolved]) (axis \(axis) of \(shape))")
    if sizes.count == 1 { return [self] }
    let parts = sizes.map { size -> Tensor in
      var partShape = shape
      partShape[resolved] = size
      return Tensor(uninitializedShape: partShape, device: device)
    }
    let outer = shape[..<resolved].reduce(1, *)
    let total = shape[resolved...].reduce(1, *)
    var offset = 0
    for part in parts {
      let width = part.count / Swift.max(outer, 1)
      backend.copyBlock(
        from: self, StridedBlock(offset: offset, rowStride: total), into: part,
        StridedBlock(offset: 0, rowStride: width), rows: outer, width: width)
      offset += width
    }
    return parts
  }

  /// Cuts the tensor along its last axis (channels, for NHWC) into pieces of the given sizes.
  public func split(alongLastAxis sizes: [Int]) -> [Tensor] {
    opPrecondition(rank >= 1, "split(alongLastAxis:): scalar tensor")
    return split(sizes: sizes, axis: rank - 1)
  }

  /// Copies `piece` into this tensor's storage at `offset` along `axis`: the inverse of one part
  /// of ``split(sizes:axis:)`` (e.g. a split's gradient assembled piece by piece in place).
  ///
  /// This writes through to the storage without copy-on-write, so every tensor sharing it
  /// (reshaped views, copies of this value) sees the change; use it on storage you own.
  /// `piece` must match `self` outside `axis`, and `offset + piece.shape[axis]` must not exceed `self.shape[axis]`.
  public func write(_ piece: Tensor, alongAxis axis: Int, at offset: Int) {
    let resolved = axis < 0 ? axis + rank : axis
    opPrecondition(resolved >= 0 && resolved < rank, "write(alongAxis:): axis \(axis) is out of range for shape \(shape)")
    var expected = shape
    expected[resolved] = piece.rank == rank ? piece.shape[resolved] : -1
    opPrecondition(
      piece.shape == expected && offset >= 0 && offset + piece.shape[resolved] <= shape[resolved],
      "write(alongAxis:): piece \(piece.shape) does not fit shape \(shape) at offset \(offset) of axis \(axis)")
    let backend = Backends.backend(op: "write(alongAxis:)", self, piece)
    let outer = shape[..<resolved].reduce(1, *)
    let inner = shape[(resolved + 1)...].reduce(1, *)
    let width = piece.shape[resolved] * inner
    backend.copyBlock(
      from: piece, StridedBlock(offset: 0, rowStride: width), into: self,
      StridedBlock(offset: offset * inner, rowStride: shape[resolved] * inner), rows: outer, width: width)
  }

  /// A batch of images cut from `source` (`[N, H, W, C]`): image `b` is `source[indices[b]]`
  /// moved by `transforms[b]` (random crop shift and flip; nil = unchanged), with `fill` where
  /// the shifted window leaves the image. The result is `[indices.count, H, W, C]`.
  public static func gatheringImages(
    _ source: Tensor, indices: [Int], transforms: [ImageTransform]? = nil, fill: Float = 0
  ) -> Tensor {
    opPrecondition(source.rank == 4, "gatheringImages: source must be [N, H, W, C], got \(source.shape)")
    let n = source.shape[0]
    for (b, index) in indices.enumerated() {
      opPrecondition(
        index >= 0 && index < n, "gatheringImages: index \(index) at position \(b) is out of range 0..<\(n)")
    }
    opPrecondition(
      transforms == nil || transforms!.count == indices.count,
      "gatheringImages: \(transforms?.count ?? 0) transforms for \(indices.count) indices")
    let result = Tensor(uninitializedShape: [indices.count] + source.shape.dropFirst(), device: source.device)
    source.backend.gatherImages(from: source, indices: indices, transforms: transforms, fill: fill, into: result)
    return result
  }

  /// Global mean pooling over the spatial axes: `[N, H, W, C] → [N, C]`.
  public func globalMeanPooled() -> Tensor {
    opPrecondition(rank == 4, "globalMeanPool: expected [N, H, W, C], got \(shape)")
    opPrecondition(shape[1] * shape[2] > 0, "globalMeanPool: empty spatial extent in \(shape)")
    return mean(alongAxes: [1, 2])
  }

  /// ∂L/∂x of ``globalMeanPooled()`` for an input of `inputShape` `[N, H, W, C]`:
  /// every position receives `g[n, c] / (H·W)`.
  public static func globalMeanPoolBackward(outputGradient: Tensor, inputShape: [Int]) -> Tensor {
    opPrecondition(
      inputShape.count == 4 && outputGradient.shape == [inputShape[0], inputShape[3]],
      "globalMeanPoolBackward: gradient \(outputGradient.shape) does not match input \(inputShape)")
    let scaled = outputGradient.scaled(by: 1 / Float(inputShape[1] * inputShape[2]))
    return scaled.reshaped([inputShape[0], 1, 1, inputShape[3]]).broadcasted(to: inputShape)
  }
}

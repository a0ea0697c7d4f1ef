// Differentiable reshaping, permutation, concatenation, splitting and global pooling.

extension Variable {
  /// The same elements under another shape (one dimension may be -1); storage is shared.
  public func reshaped(_ newShape: [Int]) -> Variable {
    let shape = self.shape
    return Variable.record(value.reshaped(newShape), inputs: [self]) { g in [g.reshaped(shape)] }
  }

  /// Axes rearranged: output axis i is input axis `axes[i]`. Backward applies the inverse permutation.
  public func permuted(_ axes: [Int]) -> Variable {
    let result = value.permuted(axes)
    var inverse = [Int](repeating: 0, count: axes.count)
    for (i, axis) in axes.enumerated() { inverse[axis] = i }
    return Variable.record(result, inputs: [self]) { g in [g.permuted(inverse)] }
  }

  /// The transpose of a matrix.
  public func transposed() -> Variable {
    if rank != 2 { fatalError("transpose: expected a matrix, got shape \(shape)") }
    return permuted([1, 0])
  }

  /// Joins variables along `axis` (negative counts from the end).
  public static func concat(_ variables: [Variable], axis: Int) -> Variable {
    let result = Tensor.concat(variables.map(\.value), axis: axis)
    let resolved = axis < 0 ? axis + result.rank : axis
    let sizes = variables.map { $0.shape[resolved] }
    let tracks = variables.map(\.tracksGradient)
    return record(result, inputs: variables) { g in
      zip(g.split(sizes: sizes, axis: resolved), tracks).map { $1 ? $0 : nil }
    }
  }

  /// Joins variables along their last axis (channels, for NHWC).
  public static func concat(alongLastAxis variables: [Variable]) -> Variable {
    if variables.isEmpty { fatalError("concat(alongLastAxis:): no variables given") }
    return concat(variables, axis: -1)
  }

  /// Cuts the variable along `axis` into consecutive pieces of the given sizes.
  ///
  /// The pieces' gradients are written into one shared input-sized buffer rather than each
  /// padded to the full input shape and summed: they pass through a private identity node (the
  /// *hub*), and only the first piece whose pullback runs hands the buffer to the tape; later
  /// pieces fill their slices in place. The hub's pullback runs after all pieces' pullbacks
  /// (it was recorded before them), so it sees the complete gradient.
  public func split(sizes: [Int], axis: Int) -> [Variable] {
    let parts = value.split(sizes: sizes, axis: axis)
    guard GradientMode.isEnabled, tracksGradient else { return parts.map { Variable($0) } }
    let resolved = axis < 0 ? axis + rank : axis
    let gradient = SplitGradient(shape: shape, sizes: sizes, axis: resolved)
    let hub = Variable.record(value, inputs: [self]) { g in
      gradient.close()
      return [g]
    }
    return parts.enumerated().map { index, part in
      Variable.record(part, inputs: [hub]) { g in [gradient.insert(g, piece: index)] }
    }
  }

  /// Cuts the variable along its last axis (channels, for NHWC) into pieces of the given sizes.
  public func split(alongLastAxis sizes: [Int]) -> [Variable] {
    if rank < 1 { fatalError("split(alongLastAxis:): scalar variable") }
    return split(sizes: sizes, axis: rank - 1)
  }

  /// Global mean pooling over the spatial axes: `[N, H, W, C] → [N, C]`.
  public func globalMeanPooled() -> Variable {
    let shape = self.shape
    return Variable.record(value.globalMeanPooled(), inputs: [self]) { g in
      [Tensor.globalMeanPoolBackward(outputGradient: g, inputShape: shape)]
    }
  }
}

/// The input-sized gradient buffer shared by the pieces of one ``Variable/split(sizes:axis:)``.
final class SplitGradient: @unchecked Sendable {
  let shape: [Int]
  let outer: Int
  let rowLength: Int
  let widths: [Int]
  let offsets: [Int]
  var buffer: Tensor?
  /// Set once the hub has consumed the buffer; a piece reached by a later backward pass must
  /// not write into it (the tape may have handed it on as a leaf's gradient).
  var isClosed = false

  init(shape: [Int], sizes: [Int], axis: Int) {
    self.shape = shape
    outer = shape[..<axis].reduce(1, *)
    let inner = shape[(axis + 1)...].reduce(1, *)
    widths = sizes.map { $0 * inner }
    rowLength = widths.reduce(0, +)
    var running = 0
    offsets = widths.map { width in
      defer { running += width }
      return running
    }
  }

  /// Writes piece `index`'s gradient into its slice. Returns the buffer the first time (the tape
  /// then owns it as the hub's gradient) and nil afterwards (the slice was filled in place).
  func insert(_ gradient: Tensor, piece index: Int) -> Tensor? {
    if isClosed { return nil }
    let isFirst = buffer == nil
    if isFirst { buffer = Tensor(zeros: shape) }
    // In place: after the first piece the tape shares this storage as the hub's gradient.
    buffer!.reshaped([outer, rowLength]).write(
      gradient.reshaped([outer, widths[index]]), alongAxis: 1, at: offsets[index])
    return isFirst ? buffer : nil
  }

  func close() {
    isClosed = true
    buffer = nil
  }
}

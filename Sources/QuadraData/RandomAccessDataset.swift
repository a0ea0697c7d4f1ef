import Foundation

/// A labelled image dataset read by index: the interface the training loader streams from.
///
/// Implementations are values that are safe to read from several threads at once
/// (``ImageFolderDataset`` decodes files on demand, ``Dataset`` copies from memory). A sample's
/// pixels depend only on its index, the augmentation and the seed passed in, never on what was read
/// before, so worker threads may produce samples in any order and the batches stay the same.
public protocol RandomAccessDataset: Sendable {
  /// A short name for logs and errors (e.g. "flowers/train").
  var name: String { get }
  /// The number of samples.
  var count: Int { get }
  /// `[H, W, C]` of every sample after its transform.
  var sampleShape: [Int] { get }
  var classCount: Int { get }
  /// `classCount` human-readable class names.
  var classNames: [String] { get }
  /// The normalization the pixels are given in.
  var normalization: Normalization { get }
  /// The label of sample `index`, known without decoding it.
  func label(at index: Int) -> Int
  /// Writes the normalized pixels of sample `index` (HWC, `sampleShape` product floats) into `destination`,
  /// transformed by `augmentation` with every random choice drawn from `RandomGenerator(seed: seed)`.
  ///
  /// Throws an error naming the sample's file when it cannot be read or decoded.
  func writeSample(
    at index: Int, augmentation: Augmentation, seed: UInt64, into destination: UnsafeMutableBufferPointer<Float>
  ) throws
}

/// One sample: normalized `[H, W, C]` pixels and its label.
public struct Sample: Sendable, Equatable {
  public var pixels: [Float]
  public var label: Int
}

extension RandomAccessDataset {
  /// Floats of one sample, `H · W · C`.
  public var sampleSize: Int { sampleShape.reduce(1, *) }

  /// Sample `index` (without augmentation unless one is given).
  public func sample(at index: Int, augmentation: Augmentation = .none, seed: UInt64 = 0) throws -> Sample {
    opPrecondition(index >= 0 && index < count, "\(name): sample index \(index) out of range 0..<\(count)")
    var pixels = [Float](repeating: 0, count: sampleSize)
    try pixels.withUnsafeMutableBufferPointer {
      try writeSample(at: index, augmentation: augmentation, seed: seed, into: $0)
    }
    return Sample(pixels: pixels, label: label(at: index))
  }
}

extension Dataset: RandomAccessDataset {
  public var sampleShape: [Int] { imageShape }

  public func label(at index: Int) -> Int { labels[index] }

  /// Copies image `index`, then applies the augmentation on the normalized pixels (crop padding is
  /// filled with black, the normalized raw value 0).
  public func writeSample(
    at index: Int, augmentation: Augmentation, seed: UInt64, into destination: UnsafeMutableBufferPointer<Float>
  ) throws {
    let size = sampleSize
    opPrecondition(destination.count == size, "\(name): a sample holds \(size) floats, not \(destination.count)")
    let shape = imageShape
    images.withUnsafeBufferPointer { all in
      let image = UnsafeBufferPointer(rebasing: all[(index * size)..<((index + 1) * size)])
      var generator = RandomGenerator(seed: seed)
      SampleTransforms.apply(
        augmentation, to: image, height: shape[0], width: shape[1], channels: shape[2],
        fill: normalization.normalize(raw: 0), using: &generator, into: destination)
    }
  }
}

/// The per-sample training transforms on normalized HWC float images.
enum SampleTransforms {
  /// `augmentation` applied to one `height × width × channels` image, written at the same size.
  ///
  /// Random-resized-crop (when set) cuts a random region and resizes it back to `height × width`;
  /// otherwise a crop padding `p` shifts the image by `(dy, dx)` uniform in `[−p, p]²`, filling the
  /// uncovered border with `fill`. A flip (probability ½) mirrors the result left–right.
  static func apply(
    _ augmentation: Augmentation, to image: UnsafeBufferPointer<Float>, height: Int, width: Int, channels: Int,
    fill: Float, using generator: inout RandomGenerator, into destination: UnsafeMutableBufferPointer<Float>
  ) {
    if let crop = augmentation.randomResizedCrop {
      let region = crop.region(height: height, width: width, using: &generator)
      let flip = augmentation.horizontalFlip && generator.next() >> 63 == 1
      resizeRegion(
        image, height: height, width: width, channels: channels, region: region, flip: flip,
        outputHeight: height, outputWidth: width, into: destination)
      return
    }
    var dy = 0, dx = 0
    let padding = augmentation.padding
    if padding > 0 {
      dy = DatasetSplitter.bounded(2 * padding + 1, using: &generator) - padding
      dx = DatasetSplitter.bounded(2 * padding + 1, using: &generator) - padding
    }
    let flip = augmentation.horizontalFlip && generator.next() >> 63 == 1
    if dy == 0 && dx == 0 && !flip {
      _ = destination.initialize(from: image)
      return
    }
    for y in 0..<height {
      let sy = y + dy
      for x in 0..<width {
        let sx = (flip ? width - 1 - x : x) + dx
        let out = (y * width + x) * channels
        if sy < 0 || sy >= height || sx < 0 || sx >= width {
          for k in 0..<channels { destination[out + k] = fill }
        } else {
          let from = (sy * width + sx) * channels
          for k in 0..<channels { destination[out + k] = image[from + k] }
        }
      }
    }
  }

  /// Bilinear resize of `region` of an HWC image to `outputHeight × outputWidth`, optionally mirrored.
  ///
  /// Sampling follows torchvision's `resized_crop` (crop, then `align_corners=False` resize without
  /// antialiasing): output pixel `i` reads the crop at `(i + ½)·s − ½`, `s` = crop size / output size,
  /// clamped to the crop.
  static func resizeRegion(
    _ image: UnsafeBufferPointer<Float>, height: Int, width: Int, channels c: Int, region: CropRegion, flip: Bool,
    outputHeight: Int, outputWidth: Int, into destination: UnsafeMutableBufferPointer<Float>
  ) {
    let stepY = Double(region.height) / Double(outputHeight), stepX = Double(region.width) / Double(outputWidth)
    let columns = (0..<outputWidth).map { x -> (Int, Int, Float) in
      let (x0, x1, w) = ImageResizing.sourceTaps(Double(x), step: stepX, size: region.width)
      return (region.left + x0, region.left + x1, Float(w))
    }
    for y in 0..<outputHeight {
      let (y0, y1, wyDouble) = ImageResizing.sourceTaps(Double(y), step: stepY, size: region.height)
      let row0 = (region.top + y0) * width, row1 = (region.top + y1) * width, wy = Float(wyDouble)
      for x in 0..<outputWidth {
        let (x0, x1, wx) = columns[flip ? outputWidth - 1 - x : x]
        let out = (y * outputWidth + x) * c
        for k in 0..<c {
          let a = image[(row0 + x0) * c + k], b = image[(row0 + x1) * c + k]
          let d = image[(row1 + x0) * c + k], e = image[(row1 + x1) * c + k]
          let top = a + (b - a) * wx, bottom = d + (e - d) * wx
          destination[out + k] = top + (bottom - top) * wy
        }
      }
    }
  }
}

/// A rectangle of an image, in pixels.
public struct CropRegion: Sendable, Equatable {
  public var top: Int
  public var left: Int
  public var height: Int
  public var width: Int
}

/// Random-resized-crop parameters (torchvision's `RandomResizedCrop`, timm's training default).
///
/// Up to ``attempts`` times: draw an area fraction `a ~ U(scale)` and a log aspect ratio
/// `log r ~ U(log ratio)`, so `w = round(√(a·H·W·r))`, `h = round(√(a·H·W / r))`; if the box fits,
/// its top-left corner is uniform over the positions where it fits. Otherwise the centre crop with the
/// aspect ratio clamped to `ratio` (the whole image when its ratio is inside). The region is then
/// resized to the network input.
public struct RandomResizedCrop: Codable, Sendable, Equatable {
  /// Range of the crop's area as a fraction of the image's, within (0, 1].
  public var scale: ClosedRange<Double>
  /// Range of the crop's width / height.
  public var ratio: ClosedRange<Double>
  /// Draws before the centre-crop fallback.
  public var attempts: Int

  /// timm's defaults: scale (0.08, 1), ratio (3/4, 4/3), 10 attempts.
  public static let timm = RandomResizedCrop(scale: 0.08...1, ratio: (3.0 / 4)...(4.0 / 3), attempts: 10)

  public init(scale: ClosedRange<Double>, ratio: ClosedRange<Double>, attempts: Int) {
    opPrecondition(
      scale.lowerBound > 0 && scale.upperBound <= 1 && ratio.lowerBound > 0 && ratio.upperBound.isFinite
        && (1...100).contains(attempts),
      "RandomResizedCrop: scale \(scale) must lie in (0, 1], ratio \(ratio) must be positive, attempts \(attempts) in 1...100")
    self.scale = scale
    self.ratio = ratio
    self.attempts = attempts
  }

  /// The crop region of a `height × width` image.
  public func region(height: Int, width: Int, using generator: inout RandomGenerator) -> CropRegion {
    let area = Double(height * width)
    let logRatio = (log(ratio.lowerBound), log(ratio.upperBound))
    for _ in 0..<attempts {
      let targetArea = area * uniform(scale.lowerBound, scale.upperBound, &generator)
      let aspect = exp(uniform(logRatio.0, logRatio.1, &generator))
      let w = Int((targetArea * aspect).squareRoot().rounded())
      let h = Int((targetArea / aspect).squareRoot().rounded())
      if w > 0 && w <= width && h > 0 && h <= height {
        let top = DatasetSplitter.bounded(height - h + 1, using: &generator)
        let left = DatasetSplitter.bounded(width - w + 1, using: &generator)
        return CropRegion(top: top, left: left, height: h, width: w)
      }
    }
    let imageRatio = Double(width) / Double(height)
    var w = width, h = height
    if imageRatio < ratio.lowerBound {
      h = Swift.min(height, Swift.max(1, Int((Double(w) / ratio.lowerBound).rounded())))
    } else if imageRatio > ratio.upperBound {
      w = Swift.min(width, Swift.max(1, Int((Double(h) * ratio.upperBound).rounded())))
    }
    return CropRegion(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w)
  }

  private func uniform(_ low: Double, _ high: Double, _ generator: inout RandomGenerator) -> Double {
    low + (high - low) * Double(generator.next() >> 11) * (1.0 / Double(1 << 53))
  }
}

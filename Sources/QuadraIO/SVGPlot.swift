import Foundation

/// A line chart rendered to a self-contained SVG document (no scripts, fonts or external files).
///
/// Series are drawn against a shared x axis and one of two y axes, so quantities of different
/// scale fit in one chart — e.g. training loss on the left axis and test accuracy on the right:
///
/// ```swift
/// let plot = SVGPlot(
///   title: "QuadraNet on Fashion-MNIST", xLabel: "epoch", leftLabel: "loss", rightLabel: "accuracy (%)",
///   series: [
///     .init(name: "train loss", x: epochs, y: losses),
///     .init(name: "test accuracy", x: epochs, y: accuracies, axis: .right),
///   ])
/// try AtomicFile.write(plot.render(), to: url)
/// ```
///
/// Non-finite values are skipped and break the line. Axis ranges are widened to "nice" tick
/// values (1, 2 or 5 × 10ᵏ steps).
public struct SVGPlot: Sendable {
  public enum Axis: Sendable { case left, right }

  public struct Series: Sendable {
    public var name: String
    public var x: [Double]
    public var y: [Double]
    public var axis: Axis
    /// A CSS color; `nil` picks the next color of the palette.
    public var color: String?
    public var dashed: Bool

    public init(name: String, x: [Double], y: [Double], axis: Axis = .left, color: String? = nil, dashed: Bool = false) {
      opPrecondition(x.count == y.count, "SVGPlot.Series '\(name)': \(x.count) x values for \(y.count) y values")
      self.name = name
      self.x = x
      self.y = y
      self.axis = axis
      self.color = color
      self.dashed = dashed
    }

    /// A series over x = 1, 2, … (e.g. epochs).
    public init(name: String, y: [Double], axis: Axis = .left, color: String? = nil, dashed: Bool = false) {
      self.init(name: name, x: (0..<y.count).map { Double($0 + 1) }, y: y, axis: axis, color: color, dashed: dashed)
    }
  }

  public var title: String?
  public var xLabel: String
  public var leftLabel: String
  public var rightLabel: String
  public var series: [Series]
  public var width: Int
  public var height: Int

  /// Colors for series without one (the matplotlib "tab10" start).
  public static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

  public init(
    title: String? = nil, xLabel: String = "", leftLabel: String = "", rightLabel: String = "",
    series: [Series] = [], width: Int = 720, height: Int = 420
  ) {
    opPrecondition(width >= 200 && height >= 150, "SVGPlot: size \(width)×\(height) is too small (min 200×150)")
    self.title = title
    self.xLabel = xLabel
    self.leftLabel = leftLabel
    self.rightLabel = rightLabel
    self.series = series
    self.width = width
    self.height = height
  }

  /// The plot area, in SVG user units.
  struct Frame {
    var left: Double, top: Double, right: Double, bottom: Double
  }

  /// A linear map from data to pixels over a tick-aligned range.
  struct Scale {
    var ticks: [Double]
    var lower: Double
    var upper: Double
    var step: Double

    /// Ticks at multiples of a 1/2/5·10ᵏ step covering `[minimum, maximum]`, about `target` of them.
    init(minimum: Double, maximum: Double, target: Int = 5) {
      var lo = minimum, hi = maximum
      if !(lo.isFinite && hi.isFinite) { lo = 0; hi = 1 }
      if hi - lo <= Swift.max(abs(hi), abs(lo)) * 1e-12 {
        // A constant series: centre it in a small range.
        let half = lo == 0 ? 1 : abs(lo) * 0.1
        lo -= half
        hi += half
      }
      let raw = (hi - lo) / Double(Swift.max(target, 1))
      let magnitude = pow(10, floor(log10(raw)))
      let fraction = raw / magnitude
      let nice: Double = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
      step = nice * magnitude
      lower = floor(lo / step + 1e-9) * step
      upper = ceil(hi / step - 1e-9) * step
      let count = Int(((upper - lower) / step).rounded())
      let (first, spacing) = (lower, step)
      ticks = (0...count).map { first + Double($0) * spacing }
    }

    func position(_ value: Double, from a: Double, to b: Double) -> Double {
      a + (value - lower) / (upper - lower) * (b - a)
    }

    /// Tick labels with just enough decimals for the step.
    func label(_ value: Double) -> String {
      let magnitude = Swift.max(abs(lower), abs(upper))
      if magnitude >= 1e6 || (magnitude < 1e-3 && magnitude > 0) { return String(format: "%.3g", value) }
      let decimals = Swift.max(0, Swift.min(6, Int(-floor(log10(step) + 1e-9))))
      let text = String(format: "%.\(decimals)f", value)
      return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
    }
  }

  /// Renders the chart as an SVG document.
  public func render() -> String {
    let usesRight = series.contains { $0.axis == .right }
    let frame = Frame(
      left: 72, top: title == nil ? 20 : 44, right: Double(width) - (usesRight ? 72 : 24), bottom: Double(height) - 56)

    func finitePoints(_ s: Series) -> [(Double, Double)] {
      zip(s.x, s.y).filter { $0.0.isFinite && $0.1.isFinite }
    }
    func range(_ values: [Double]) -> (Double, Double) {
      values.isEmpty ? (0, 1) : (values.min()!, values.max()!)
    }
    let xs = series.flatMap { finitePoints($0).map(\.0) }
    let xRange = range(xs)
    let xScale = Scale(minimum: xRange.0, maximum: xRange.1, target: 8)
    func yScale(_ axis: Axis) -> Scale {
      let values = series.filter { $0.axis == axis }.flatMap { finitePoints($0).map(\.1) }
      let r = range(values)
      return Scale(minimum: r.0, maximum: r.1, target: 5)
    }
    let leftScale = yScale(.left), rightScale = yScale(.right)
    func px(_ x: Double) -> Double { xScale.position(x, from: frame.left, to: frame.right) }
    func py(_ y: Double, _ axis: Axis) -> Double {
      (axis == .left ? leftScale : rightScale).position(y, from: frame.bottom, to: frame.top)
    }
    let colors = series.enumerated().map { $0.element.color ?? SVGPlot.palette[$0.offset % SVGPlot.palette.count] }

    var svg = """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" \
      font-family="Helvetica, Arial, sans-serif" font-size="12">

      """
    svg += "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"white\"/>\n"
    if let title {
      svg += text(title, x: Double(width) / 2, y: 26, anchor: "middle", extra: " font-size=\"15\" font-weight=\"bold\"")
    }

    // Grid and ticks: x ticks below the frame, left ticks at its left edge, right ticks at its right edge.
    svg += "<g class=\"grid\" stroke=\"#e5e5e5\" stroke-width=\"1\">\n"
    for t in xScale.ticks {
      svg += line(px(t), frame.top, px(t), frame.bottom)
    }
    for t in leftScale.ticks {
      svg += line(frame.left, py(t, .left), frame.right, py(t, .left))
    }
    svg += "</g>\n"
    svg += "<g class=\"axes\" stroke=\"#333\" stroke-width=\"1\" fill=\"none\">\n"
    svg += "<rect x=\"\(f(frame.left))\" y=\"\(f(frame.top))\" width=\"\(f(frame.right - frame.left))\" "
      + "height=\"\(f(frame.bottom - frame.top))\"/>\n"
    for t in xScale.ticks { svg += line(px(t), frame.bottom, px(t), frame.bottom + 5) }
    for t in leftScale.ticks { svg += line(frame.left - 5, py(t, .left), frame.left, py(t, .left)) }
    if usesRight {
      for t in rightScale.ticks { svg += line(frame.right, py(t, .right), frame.right + 5, py(t, .right)) }
    }
    svg += "</g>\n"
    svg += "<g class=\"tick-labels\" fill=\"#333\">\n"
    for t in xScale.ticks {
      svg += text(xScale.label(t), x: px(t), y: frame.bottom + 18, anchor: "middle")
    }
    for t in leftScale.ticks {
      svg += text(leftScale.label(t), x: frame.left - 8, y: py(t, .left) + 4, anchor: "end")
    }
    if usesRight {
      for t in rightScale.ticks {
        svg += text(rightScale.label(t), x: frame.right + 8, y: py(t, .right) + 4, anchor: "start")
      }
    }
    svg += "</g>\n"

    // Axis labels.
    let middleY = (frame.top + frame.bottom) / 2
    if !xLabel.isEmpty {
      svg += text(xLabel, x: (frame.left + frame.right) / 2, y: Double(height) - 14, anchor: "middle")
    }
    if !leftLabel.isEmpty {
      svg += text(leftLabel, x: 18, y: middleY, anchor: "middle", extra: " transform=\"rotate(-90 18 \(f(middleY)))\"")
    }
    if usesRight && !rightLabel.isEmpty {
      let x = Double(width) - 14
      svg += text(rightLabel, x: x, y: middleY, anchor: "middle", extra: " transform=\"rotate(90 \(f(x)) \(f(middleY)))\"")
    }

    // Series: one polyline per run of finite points, plus markers when points are few.
    for (index, s) in series.enumerated() {
      let color = colors[index]
      let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
      svg += "<g class=\"series\" data-name=\"\(escape(s.name))\">\n"
      var segment: [String] = []
      func flush() {
        if segment.count > 1 {
          svg += "<polyline fill=\"none\" stroke=\"\(escape(color))\" stroke-width=\"2\"\(dash) "
            + "points=\"\(segment.joined(separator: " "))\"/>\n"
        }
        segment.removeAll()
      }
      let pointCount = finitePoints(s).count
      for (x, y) in zip(s.x, s.y) {
        guard x.isFinite && y.isFinite else {
          flush()
          continue
        }
        let point = "\(f(px(x))),\(f(py(y, s.axis)))"
        segment.append(point)
        if pointCount <= 60 {
          svg += "<circle cx=\"\(f(px(x)))\" cy=\"\(f(py(y, s.axis)))\" r=\"2.5\" fill=\"\(escape(color))\"/>\n"
        }
      }
      flush()
      svg += "</g>\n"
    }

    // Legend in the top-right corner of the plot area.
    if !series.isEmpty {
      let labels = series.map { usesRight ? "\($0.name) (\($0.axis == .left ? "left" : "right"))" : $0.name }
      let legendWidth = Double(labels.map(\.count).max()!) * 6.6 + 40
      let legendHeight = Double(series.count) * 18 + 8
      let x0 = frame.right - legendWidth - 8, y0 = frame.top + 8
      svg += "<g class=\"legend\">\n"
      svg += "<rect x=\"\(f(x0))\" y=\"\(f(y0))\" width=\"\(f(legendWidth))\" height=\"\(f(legendHeight))\" "
        + "fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n"
      for (index, label) in labels.enumerated() {
        let y = y0 + 14 + Double(index) * 18
        let dash = series[index].dashed ? " stroke-dasharray=\"6 4\"" : ""
        svg += "<line x1=\"\(f(x0 + 8))\" y1=\"\(f(y - 4))\" x2=\"\(f(x0 + 30))\" y2=\"\(f(y - 4))\" "
          + "stroke=\"\(escape(colors[index]))\" stroke-width=\"2\"\(dash)/>\n"
        svg += text(label, x: x0 + 36, y: y, anchor: "start")
      }
      svg += "</g>\n"
    }
    svg += "</svg>\n"
    return svg
  }

  private func f(_ value: Double) -> String { String(format: "%.2f", value) }

  private func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double) -> String {
    "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\"/>\n"
  }

  private func text(_ content: String, x: Double, y: Double, anchor: String, extra: String = "") -> String {
    "<text x=\"\(f(x))\" y=\"\(f(y))\" text-anchor=\"\(anchor)\"\(extra)>\(escape(content))</text>\n"
  }

  /// Escapes text for XML content and attribute values.
  func escape(_ text: String) -> String {
    var result = ""
    for character in text {
      switch character {
      case "&": result += "&amp;"
      case "<": result += "&lt;"
      case ">": result += "&gt;"
      case "\"": result += "&quot;"
      case "'": result += "&apos;"
      default: result.append(character)
      }
    }
    return result
  }
}

import Foundation
import Testing

@testable import QuadraIO

/// Checks that `xml` is well-formed enough for a browser: balanced, properly nested tags, quoted
/// attributes, and no raw `<` or stray `&` in text. Returns the element names in document order.
func checkWellFormed(_ xml: String) throws -> [String] {
  struct Malformed: Error { var reason: String }
  var stack: [String] = []
  var elements: [String] = []
  var rest = Substring(xml)
  while let open = rest.firstIndex(of: "<") {
    let text = rest[..<open]
    try checkText(text)
    guard let close = rest[open...].firstIndex(of: ">") else { throw Malformed(reason: "unterminated tag") }
    let tag = rest[rest.index(after: open)..<close]
    rest = rest[rest.index(after: close)...]
    if tag.hasPrefix("/") {
      guard stack.popLast() == String(tag.dropFirst()) else { throw Malformed(reason: "mismatched </\(tag.dropFirst())>") }
      continue
    }
    let selfClosing = tag.hasSuffix("/")
    let body = selfClosing ? tag.dropLast() : tag
    let name = String(body.prefix { !$0.isWhitespace })
    guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0 == "-" }) else { throw Malformed(reason: "bad name \(name)") }
    guard body.filter({ $0 == "\"" }).count % 2 == 0 else { throw Malformed(reason: "unbalanced quotes in <\(name)>") }
    try checkText(body.replacingOccurrences(of: "\"", with: "")[...])
    elements.append(name)
    if !selfClosing { stack.append(name) }
  }
  guard stack.isEmpty else { throw Malformed(reason: "unclosed \(stack)") }
  try checkText(rest)
  return elements

  func checkText(_ text: Substring) throws {
    var index = text.startIndex
    while let amp = text[index...].firstIndex(of: "&") {
      let entity = text[amp...].prefix { $0 != ";" }
      guard ["&amp", "&lt", "&gt", "&quot", "&apos"].contains(String(entity)) else {
        throw Malformed(reason: "stray & in \(text)")
      }
      index = text.index(after: amp)
    }
  }
}

/// The `points` attributes of the polylines in document order, parsed to (x, y) pairs.
func polylines(_ svg: String) -> [[(Double, Double)]] {
  svg.components(separatedBy: "<polyline").dropFirst().map { chunk in
    let start = chunk.range(of: "points=\"")!.upperBound
    let end = chunk[start...].firstIndex(of: "\"")!
    return chunk[start..<end].split(separator: " ").map { pair in
      let xy = pair.split(separator: ",").map { Double($0)! }
      return (xy[0], xy[1])
    }
  }
}

@Suite struct SVGPlotTests {
  @Test func niceTicks() {
    let scale = SVGPlot.Scale(minimum: 0.13, maximum: 0.87, target: 5)
    #expect(scale.step == 0.2 && scale.lower == 0 && abs(scale.upper - 1) < 1e-12)
    #expect(scale.ticks.map(scale.label) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
    let epochs = SVGPlot.Scale(minimum: 1, maximum: 30, target: 8)
    #expect(epochs.step == 5 && epochs.lower == 0 && epochs.upper == 30)
    #expect(epochs.label(15) == "15")
    let constant = SVGPlot.Scale(minimum: 2, maximum: 2)
    #expect(constant.lower < 2 && constant.upper > 2)
    let big = SVGPlot.Scale(minimum: 0, maximum: 2_500_000)
    #expect(big.label(2_000_000) == "2e+06")
  }

  @Test func rendersTwoAxesLegendAndLines() throws {
    let losses = [2.3, 1.1, 0.8, 0.61, 0.5]
    let accuracies = [40.0, 71, 80, 84.5, 86]
    let plot = SVGPlot(
      title: "QuadraNet <tiny> & friends", xLabel: "epoch", leftLabel: "train loss", rightLabel: "test accuracy (%)",
      series: [
        .init(name: "train loss", y: losses),
        .init(name: "test accuracy", y: accuracies, axis: .right, dashed: true),
      ])
    let svg = plot.render()
    #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
    let elements = try checkWellFormed(svg)
    #expect(elements.filter { $0 == "polyline" }.count == 2)
    #expect(elements.filter { $0 == "circle" }.count == 10)
    #expect(svg.contains("QuadraNet &lt;tiny&gt; &amp; friends"))
    #expect(svg.contains(">train loss (left)</text>") && svg.contains(">test accuracy (right)</text>"))
    #expect(svg.contains(">test accuracy (%)</text>") && svg.contains(">epoch</text>"))
    #expect(svg.contains("stroke-dasharray"))

    // Geometry: x = 1…5 spans left to right in order; each series' extremes land on its own axis range.
    let lines = polylines(svg)
    let loss = lines[0], accuracy = lines[1]
    #expect(loss.count == 5 && accuracy.count == 5)
    #expect(zip(loss, loss.dropFirst()).allSatisfy { $0.0 < $1.0 })
    #expect(loss.map(\.0) == accuracy.map(\.0))
    // Loss falls, so its y (pixels, downward) rises; accuracy rises, so its y falls.
    #expect(zip(loss, loss.dropFirst()).allSatisfy { $0.1 < $1.1 })
    #expect(zip(accuracy, accuracy.dropFirst()).allSatisfy { $0.1 > $1.1 })
    // Linear in the data: equal data steps give equal pixel steps (x), and y is affine in loss.
    let dx = loss[1].0 - loss[0].0
    #expect(zip(loss, loss.dropFirst()).allSatisfy { abs(($1.0 - $0.0) - dx) < 0.02 })
    let slope = (loss[4].1 - loss[0].1) / (losses[4] - losses[0])
    for i in 0..<5 { #expect(abs(loss[0].1 + slope * (losses[i] - losses[0]) - loss[i].1) < 0.02) }
    // The right-axis ticks are labelled.
    #expect(svg.contains(">80</text>") || svg.contains(">80.0</text>"))
  }

  @Test func nonFiniteValuesBreakTheLine() throws {
    let plot = SVGPlot(series: [.init(name: "loss", x: [1, 2, 3, 4, 5, 6], y: [3, 2, .nan, 1.5, 1.2, .infinity])])
    let svg = plot.render()
    _ = try checkWellFormed(svg)
    let lines = polylines(svg)
    #expect(lines.count == 2 && lines[0].count == 2 && lines[1].count == 2)
    #expect(!svg.contains("(left)"))  // one axis: plain legend labels
    #expect(!svg.contains("nan") && !svg.contains("inf"))
  }

  @Test func emptyPlotStillRenders() throws {
    let svg = SVGPlot(title: "nothing yet").render()
    let elements = try checkWellFormed(svg)
    #expect(elements.first == "svg" && !elements.contains("polyline"))
  }
}

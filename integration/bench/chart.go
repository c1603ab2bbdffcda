package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strconv"
)

// bar is one ratio on the chart.
type bar struct {
	label  string
	ratio  float64
	target float64 // 0: none
}

var (
	white     = color.RGBA{255, 255, 255, 255}
	black     = color.RGBA{0, 0, 0, 255}
	grid      = color.RGBA{220, 220, 220, 255}
	parity    = color.RGBA{90, 90, 90, 255}
	metColor  = color.RGBA{46, 160, 67, 255}
	missColor = color.RGBA{215, 58, 73, 255}
	noneColor = color.RGBA{66, 133, 244, 255}
)

// Chart geometry in pixels.
const (
	textScale = 2
	lineH     = glyphH * textScale
	plotW     = 640
	valueW    = 110 // right of the plot, for the last bar's value
	rowH      = 32
	barH      = 18
	plotTop   = 80
	margin    = 16
)

// drawChart draws the ratios as horizontal bars from parity (1×) on a log
// scale: right of the parity line weedfuse is better, left of it worse.
func drawChart(title, subtitle string, bars []bar) *image.RGBA {
	labelW := 0
	for _, b := range bars {
		labelW = max(labelW, textWidth(b.label, textScale))
	}
	x0 := margin + labelW + margin
	x1 := x0 + plotW
	plotBottom := plotTop + len(bars)*rowH
	width, height := x1+valueW, plotBottom+lineH+2*margin+lineH+2*margin
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fill(img, img.Bounds(), white)
	drawText(img, margin, margin, title, textScale, black)
	drawText(img, margin, margin+lineH+10, subtitle, textScale, parity)

	x := logAxis(img, bars, x0, plotW, plotTop, plotBottom)
	one := x(1)

	for i, b := range bars {
		top := plotTop + i*rowH
		drawText(img, margin+labelW-textWidth(b.label, textScale), top+(rowH-lineH)/2, b.label, textScale, black)
		if !(b.ratio > 0) || math.IsInf(b.ratio, 0) {
			drawText(img, one+6, top+(rowH-lineH)/2, "N/A", textScale, black)
			continue
		}
		c := noneColor
		if b.target > 0 {
			c = map[bool]color.RGBA{true: metColor, false: missColor}[b.ratio >= b.target]
		}
		bx := x(b.ratio)
		fill(img, image.Rect(min(one, bx), top+(rowH-barH)/2, max(one, bx), top+(rowH+barH)/2), c)
		// The value goes right of the bar and of the target mark, so that
		// neither covers it.
		textX := max(one, bx) + 6
		if b.target > 0 {
			tx := x(b.target)
			fill(img, image.Rect(tx-1, top+2, tx+2, top+rowH-2), black)
			textX = max(textX, tx+8)
		}
		drawText(img, textX, top+(rowH-lineH)/2, fmtRatio(b.ratio), textScale, black)
	}

	ly := plotBottom + lineH + 2*margin
	lx := margin
	for _, item := range []struct {
		c    color.RGBA
		w    int
		text string
	}{
		{metColor, 24, "target met"}, {missColor, 24, "target missed"}, {noneColor, 24, "no target"}, {black, 3, "target"},
	} {
		fill(img, image.Rect(lx, ly, lx+item.w, ly+lineH), item.c)
		lx += item.w + 8
		drawText(img, lx, ly, item.text, textScale, black)
		lx += textWidth(item.text, textScale) + 24
	}
	return img
}

// logRange is the chart's span in powers of ten: whole decades that hold
// every ratio, every target and at least one decade each side of parity.
func logRange(bars []bar) (lo, hi float64) {
	lo, hi = -1, 1
	for _, b := range bars {
		for _, v := range []float64{b.ratio, b.target} {
			if v > 0 && !math.IsInf(v, 0) {
				lo = min(lo, math.Floor(math.Log10(v)))
				hi = max(hi, math.Ceil(math.Log10(v*1.05)))
			}
		}
	}
	return lo, hi
}

func fill(img draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// writeChart draws the chart into a PNG file.
func writeChart(path, title, subtitle string, bars []bar) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, drawChart(title, subtitle, bars)); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

// seriesColors tell the mounts apart on the grouped chart.
var seriesColors = []color.RGBA{
	{90, 90, 90, 255},   // weed mount
	{66, 133, 244, 255}, // rclone full
	{140, 190, 250, 255},
	{234, 134, 0, 255}, // s3fs cache
	{250, 195, 120, 255},
	{46, 160, 67, 255}, // JuiceFS
	{160, 80, 200, 255},
}

// Grouped chart geometry: one thin bar per series, a gap between groups.
const (
	subH   = 18
	subBar = 12
	gapH   = 10
)

// drawGroupedChart draws, per group (a workload), one bar per series (a
// mount): ratios[g][s], from parity on a log scale like drawChart, the
// value beside each bar, and a legend of the series' colors.
func drawGroupedChart(title, subtitle string, groups, series []string, ratios [][]float64) *image.RGBA {
	labelW := 0
	for _, g := range groups {
		labelW = max(labelW, textWidth(g, textScale))
	}
	x0 := margin + labelW + margin
	x1 := x0 + plotW
	groupH := len(series)*subH + gapH
	plotBottom := plotTop + len(groups)*groupH
	legendRows := (len(series) + 3) / 4
	width := x1 + valueW
	height := plotBottom + lineH + 2*margin + legendRows*(lineH+8) + margin
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fill(img, img.Bounds(), white)
	drawText(img, margin, margin, title, textScale, black)
	drawText(img, margin, margin+lineH+10, subtitle, textScale, parity)

	var all []bar
	for _, rs := range ratios {
		for _, r := range rs {
			all = append(all, bar{ratio: r})
		}
	}
	x := logAxis(img, all, x0, plotW, plotTop, plotBottom)
	one := x(1)
	for gi, g := range groups {
		top := plotTop + gi*groupH
		drawText(img, margin+labelW-textWidth(g, textScale), top+(len(series)*subH-lineH)/2, g, textScale, black)
		for si := range series {
			y := top + si*subH
			r := math.NaN()
			if si < len(ratios[gi]) {
				r = ratios[gi][si]
			}
			if !(r > 0) || math.IsInf(r, 0) {
				drawText(img, one+6, y+(subH-lineH)/2, "N/A", textScale, black)
				continue
			}
			bx := x(r)
			fill(img, image.Rect(min(one, bx), y+(subH-subBar)/2, max(one, bx), y+(subH+subBar)/2), seriesColors[si%len(seriesColors)])
			drawText(img, max(one, bx)+6, y+(subH-lineH)/2, fmtRatio(r), textScale, black)
		}
		if gi > 0 {
			fill(img, image.Rect(margin, top-gapH/2, x1, top-gapH/2+1), grid)
		}
	}
	ly := plotBottom + lineH + 2*margin
	lx := margin
	for si, s := range series {
		if si > 0 && si%4 == 0 {
			ly += lineH + 8
			lx = margin
		}
		fill(img, image.Rect(lx, ly, lx+24, ly+lineH), seriesColors[si%len(seriesColors)])
		lx += 32
		drawText(img, lx, ly, s, textScale, black)
		lx += textWidth(s, textScale) + 24
	}
	return img
}

// writeGroupedChart draws the grouped chart into a PNG file.
func writeGroupedChart(path, title, subtitle string, groups, series []string, ratios [][]float64) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, drawGroupedChart(title, subtitle, groups, series, ratios)); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

// logAxis draws the log-scale ratio axis that spans bars (a grid line and
// label per power of ten, and the parity line at 1x) and returns the x of
// a ratio on it.
func logAxis(img *image.RGBA, bars []bar, x0, plotW, plotTop, plotBottom int) func(float64) int {
	lo, hi := logRange(bars)
	x := func(v float64) int {
		return x0 + int(math.Round((math.Log10(v)-lo)/(hi-lo)*float64(plotW)))
	}
	for e := lo; e <= hi; e++ {
		gx := x(math.Pow(10, e))
		fill(img, image.Rect(gx, plotTop, gx+1, plotBottom), grid)
		label := strconv.FormatFloat(math.Pow(10, e), 'g', -1, 64) + "x"
		drawText(img, gx-textWidth(label, textScale)/2, plotBottom+6, label, textScale, black)
	}
	one := x(1)
	fill(img, image.Rect(one-1, plotTop, one+1, plotBottom), parity)
	return x
}

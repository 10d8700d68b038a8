"""Line plots of several named series over shared x positions (PIL only)."""

from PIL import Image, ImageDraw

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194)]


def plot_series(
    series: dict[str, list[float]], title: str, x_label: str, y_range: tuple[float, float], size: tuple[int, int] = (560, 300)
) -> Image.Image:
    width, height = size
    left, right, top, bottom = 48, 150, 24, 30
    picture = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    draw.rectangle([left, top, width - right, height - bottom], outline=(160, 160, 160))
    low, high = y_range
    span = (high - low) or 1.0
    draw.text((left, 6), title, fill="black")
    draw.text((4, top), f"{high:.2g}", fill="black")
    draw.text((4, height - bottom - 10), f"{low:.2g}", fill="black")
    draw.text((left, height - bottom + 8), x_label, fill="black")
    if low < 0 < high:
        y0 = top + (height - top - bottom) * high / span
        draw.line([(left, y0), (width - right, y0)], fill=(210, 210, 210))
    for k, (name, values) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        count = max(len(values) - 1, 1)
        points = [
            (left + (width - left - right) * i / count, top + (height - top - bottom) * (high - min(max(v, low), high)) / span)
            for i, v in enumerate(values)
        ]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        draw.text((width - right + 8, top + 14 * k), name, fill=colour)
    return picture

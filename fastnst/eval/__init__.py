"""Measuring results: content / style losses of stylized images, and the warping error of videos."""

"""Evaluation metrics shared by the papers' tables: image quality (PSNR, SSIM, CPBD) and
animation accuracy (parameter MSE, 3-D lip landmark distance, sequence SSIM, CCA). None of them
needs third-party weights."""

